"""Out-of-domain flagging (mediqa_cli.domain): k-NN distance of slice physics to the corpus."""

from __future__ import annotations

import numpy as np
import pytest

from mediqa_cli.domain import DomainCheck, fit_domain
from mediqa_cli.physics import N_PHYSICS


def measures(rng: np.random.Generator, n: int, centre: float, colour: bool) -> np.ndarray:
    x = rng.normal(centre, 1.0, (n, N_PHYSICS))
    if not colour:
        x[:, -1] = np.nan  # grey slices have no chroma
    return x


@pytest.fixture(scope="module")
def check() -> DomainCheck:
    rng = np.random.default_rng(0)
    train = {"MR": measures(rng, 200, 0.0, False), "FUNDUS": measures(rng, 100, 6.0, True)}
    held = {"MR": measures(rng, 100, 0.0, False), "FUNDUS": measures(rng, 50, 6.0, True)}
    return fit_domain(train, held, k=3, quantile=0.95)


def test_corpus_like_slices_pass_and_far_ones_are_flagged(check: DomainCheck) -> None:
    rng = np.random.default_rng(1)
    inside = [check.check([row]).in_domain for row in measures(rng, 200, 0.0, False)]
    assert 0.85 <= np.mean(inside) <= 1.0  # about the 95 % the threshold was set for
    far = check.check(list(measures(rng, 3, 15.0, False)))
    assert not far.in_domain and far.distance > 1 and "out of domain" in (far.note or "")


def test_colour_where_the_corpus_is_grey_counts(check: DomainCheck) -> None:
    rng = np.random.default_rng(2)
    grey_mr = measures(rng, 50, 0.0, False)
    coloured_mr = grey_mr.copy()
    coloured_mr[:, -1] = 0.0
    assert check.distances(coloured_mr).mean() > check.distances(grey_mr).mean() + 2.0


def test_references_round_trip_and_other_measures_are_refused(check: DomainCheck,
                                                             tmp_path) -> None:
    check.save(tmp_path)
    back = DomainCheck.load(tmp_path)
    assert back is not None and back.k == check.k
    rows = np.random.default_rng(3).normal(0, 1, (5, N_PHYSICS))
    np.testing.assert_allclose(back.distances(rows), check.distances(rows), atol=1e-3)
    text = (tmp_path / "domain.json").read_text().replace('"noise"', '"noise_v0"')
    (tmp_path / "domain.json").write_text(text)
    assert DomainCheck.load(tmp_path) is None
    assert DomainCheck.load(tmp_path / "absent") is None
