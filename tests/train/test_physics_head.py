"""mediqa_train.physics_head: the ranker finds the token of the fault; its share and its zero."""

from __future__ import annotations

from pathlib import Path

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


def test_the_clean_spread_penalty_stops_the_term_pricing_what_a_clean_image_is():
    """A token that differs only between images (not along a ladder) and one that tracks the
    fault but also varies between images: the penalty must shrink the clean term's spread."""
    rng = np.random.default_rng(3)
    ladders = []
    for _ in range(30):
        tokens = _ladder(rng)
        tokens[:, 7] = rng.normal(0.0, 3.0) + 0.3 * np.arange(6)  # content, a little fault
        ladders.append(tokens)
    spreads = []
    for penalty in (0.0, 1.0):
        reader = fit_ranker(ladders, clean_spread=penalty)
        clean = [reader.term(tokens[:1])[0] for tokens in ladders]
        along = [np.all(np.diff(reader.term(tokens)) < 0) for tokens in ladders]
        spreads.append(np.std(clean) / np.std(np.concatenate([reader.term(t) for t in ladders])))
        assert np.mean(along) > 0.9  # it still ranks the steps
    assert spreads[1] < 0.5 * spreads[0]


def test_refitting_one_modality_keeps_the_others_readers(monkeypatch: pytest.MonkeyPatch):
    import mediqa_train.physics_head as ph

    from mediqa_cli.physics_head import PhysicsHead

    rng = np.random.default_rng(4)
    xr = fit_ranker([_ladder(rng) for _ in range(5)])
    kept = PhysicsHead({"XR": xr, "MR": xr}, fitted_on="before")
    ladders = [TokenLadder("MR", "sim", _ladder(rng), rng.normal(3.0, 2.0, 6)) for _ in range(10)]
    monkeypatch.setattr(ph, "collect_ladders", lambda *args, **kwargs: ladders)
    monkeypatch.setattr("mediqa_train.evaluate.WeightSet", lambda *args, **kwargs: None)
    manifest = Path(ph.__file__).with_name("manifest.csv")
    head = ph.fit_head(Path("unused"), manifest, ["MR"], 0, 8, 0.5, 3, Path("unused"), None,
                       echo=lambda _: None, keep=kept)
    assert set(head.readers) == {"MR", "XR"} and head.readers["XR"] is xr
    assert head.readers["MR"] is not xr and "kept XR from before" in head.fitted_on
