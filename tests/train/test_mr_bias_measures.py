"""benchmarks/mr_bias_measures.py: the field measures see a known shading, and the AUC counts."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark


def _phantom(field_strength: float) -> np.ndarray:
    """Two tissues in a disc on a dark background, times exp(strength * x): a linear log-field."""
    yy, xx = np.mgrid[-1:1:256j, -1:1:256j]
    image = np.where(xx**2 + yy**2 < 0.8, 100.0, 1.0)
    image[(np.abs(xx) < 0.2) & (np.abs(yy) < 0.5)] = 60.0  # a second tissue inside
    return image * np.exp(field_strength * xx)


def test_the_dominant_tissue_fit_recovers_a_known_field_and_the_entropy_rises_with_it() -> None:
    bench = load_benchmark("mr_bias_measures")
    flat, shaded = _phantom(0.0), _phantom(0.4)
    clean_small, clean_mask = bench._object(flat)
    small, mask = bench._object(shaded)
    assert bench.mode_field(clean_small, clean_mask) < 0.01  # two flat tissues: no field
    # The field is 0.4 x: over the object its SD is about 0.4 x SD(x) (the fit reads the
    # eroded object, hence the tolerance).
    inner_x = np.linspace(-1, 1, small.shape[1])[np.nonzero(mask)[1]]
    assert bench.mode_field(small, mask) == pytest.approx(0.4 * inner_x.std(), rel=0.25)
    assert bench.log_entropy(small, mask) > bench.log_entropy(clean_small, clean_mask) + 0.5
    assert bench.n4_field(clean_small, clean_mask) < 0.01
    assert bench.n4_field(small, mask) > 0.05


def test_cross_image_auc_pairs_a_clean_slice_only_with_other_groups_severe_steps() -> None:
    bench = load_benchmark("mr_bias_measures")

    def auc(b: np.ndarray) -> float:
        table = bench.stick_table([("bias", "a", {"m": np.array([5.0, 4, 3, 2, 1, 0])}),
                                   ("bias", "b", {"m": b})])
        return table.auc("MR", "m")

    # a's clean 5 beats b's steps 3-5 (3, 1, 0); b's clean 2.5 beats a's 2, 1, 0: 6 of 6 pairs.
    assert auc(np.array([2.5, 4, 3, 3, 1, 0])) == 1.0
    # b's clean now beats only a's 0
    assert auc(np.array([0.5, 4, 3, 3, 1, 0])) == pytest.approx(4 / 6)
