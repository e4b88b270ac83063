"""mediqa_train.physics_head: the ranker finds the token of the fault; its share and its zero."""

from __future__ import annotations

import numpy as np
import pytest
from mediqa_train.physics_head import TokenLadder, fit_ranker, reader_beside

from mediqa_cli.physics import N_PHYSICS


def _ladder(rng: np.random.Generator, sign: float = 1.0) -> np.ndarray:
    tokens = rng.normal(0.0, 1.0, (6, N_PHYSICS))  # unrelated tokens: noise
    tokens[:, 3] = sign * np.arange(6) + rng.normal(0.0, 0.05, 6)  # tracks the fault
    tokens[:, 5] = np.nan  # undefined everywhere: must not break the fit
    return tokens


def test_ranker_learns_which_token_rises_with_the_fault_and_ignores_noise():
    rng = np.random.default_rng(1)
    reader = fit_ranker([_ladder(rng) for _ in range(20)])
    assert np.argmax(np.abs(reader.weights)) == 3 and reader.weights[3] > 0
    assert np.all(np.diff(reader.term(_ladder(rng))) < 0)  # falls step by step with the fault


def test_reader_beside_the_network_has_its_share_of_the_spread_and_zero_on_clean_slices():
    rng = np.random.default_rng(2)
    ladders = [TokenLadder("MR", "sim", _ladder(rng), rng.normal(3.0, 2.0, 6)) for _ in range(30)]
    reader = reader_beside(ladders, share=0.5)
    terms = np.concatenate([reader.term(ladder.tokens) for ladder in ladders])
    logits = np.concatenate([ladder.logits for ladder in ladders])
    assert np.std(terms) == pytest.approx(0.5 * np.std(logits), rel=1e-6)
    assert np.median([reader.term(ladder.tokens[:1])[0] for ladder in ladders]) == pytest.approx(
        0.0, abs=1e-9)
