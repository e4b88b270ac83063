"""benchmarks/ladder_terms.py: the table splits a score into its parts and names a jump's token."""

from __future__ import annotations

import numpy as np

from mediqa_cli.physics import PHYSICS_FEATURES
from mediqa_cli.physics_head import TokenReader
from tests.benchmark_scripts import load_benchmark

N = len(PHYSICS_FEATURES)
CLIP = PHYSICS_FEATURES.index("clip_low")
NOISE = PHYSICS_FEATURES.index("noise")


def _reader() -> TokenReader:
    weights = np.zeros(N)
    weights[CLIP], weights[NOISE] = -0.5, 0.25  # fewer clipped pixels or more noise: lower
    return TokenReader(np.zeros(N), np.ones(N), weights, offset=0.3)


def _ladder(bench, family: str, clean_logit: float):  # noqa: ANN001, ANN202
    """The network drops 2 at step 1 and then wanders; the clip token falls 4 at step 1 and
    stays; noise rises a step at a time."""
    tokens = np.zeros((6, N))
    tokens[1:, CLIP] = -4.0
    tokens[:, NOISE] = np.arange(6.0)
    return bench.ScoredLadder(family, clean_logit - np.array([0, 2, 1.9, 2.1, 2.05, 2.2]), tokens)


def test_the_parts_add_up_and_a_jump_is_told_from_growth() -> None:
    bench = load_benchmark("ladder_terms")
    reader = _reader()
    ladders = [_ladder(bench, "motion", 5.0), _ladder(bench, "motion", 3.0)]
    parts = bench.shares(reader, ladders[0].tokens)
    assert np.allclose(parts.sum(axis=1) - reader.offset, reader.term(ladders[0].tokens))

    header, family, first_token, second_token, *_ = bench.family_lines(ladders, reader, top=2)
    assert family.split()[:2] == ["motion", "2"]
    # SRCC of score / network / term: the term (-2.25 at step 1, then -0.25 a step) ranks every
    # step; the network wanders after its jump (0.89 with the clean image, 0.80 without)
    assert "+1.00 / +0.89 / +1.00" in family and "+1.00 / +0.80 / +1.00" in family
    assert family.split()[-4:] == ["-2.00", "-2.25", "-0.20", "-1.00"]
    assert first_token.split()[:3] == ["clip_low", "clean→1", "-2.000,"]
    assert first_token.split()[-1] == "+0.000"
    assert second_token.split()[0] == "noise" and second_token.split()[-1] == "-1.000"


def test_clean_spread_counts_each_clean_image_once() -> None:
    bench = load_benchmark("ladder_terms")
    reader = _reader()
    one = _ladder(bench, "motion", 5.0)
    other = _ladder(bench, "motion", 3.0)
    other.tokens[0, NOISE] = 2.0  # a different clean image: its term is -0.5 lower
    third = _ladder(bench, "motion", 4.0)
    third.tokens[0, NOISE] = 1.0
    line = bench.clean_spread([one, _ladder(bench, "ghosting", 5.0), other, third], reader)
    assert line.startswith("clean images: 3;")
    # network 5, 3, 4; term 0, -0.5, -0.25; score 5, 2.5, 3.75 (population SDs)
    assert "of the network 0.82, of the term 0.20, of the score 1.02" in line
    assert line.endswith("follows noise -1.00")  # the higher logit, the lower noise token
