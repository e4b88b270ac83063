"""The calibrated scale (mediqa_cli.calibration, mediqa_train.calibration): grade cuts anchored
on ladder steps, a map that never reorders scores, and its place in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mediqa_train.calibration import crossfit_check, fit_calibration, fit_scale_map, step_samples
from mediqa_train.evaluate import LadderResult

from mediqa_cli.calibration import CUT_SCORES, POOLED, Calibration, ScaleMap, raw_logit


def ladders(rng: np.random.Generator, modality: str, groups: int, typical: list[float],
            spread: float) -> list[LadderResult]:
    """Ladders whose raw score at step k is logistic(typical[k] + noise), three families."""
    out = []
    for g in range(groups):
        clean = typical[0] + rng.normal(0, spread)
        for family in ("noise", "blur", "jpeg"):
            logits = [clean] + [typical[k] + rng.normal(0, spread) for k in range(1, 6)]
            out.append(LadderResult(modality, family, f"{modality}-{g}",
                                    {"model": [100 / (1 + np.exp(-x)) for x in logits]}))
    return out


def test_cuts_sit_midway_between_the_typical_scores_of_neighbouring_steps() -> None:
    typical = [6.0, 5.0, 3.0, 2.0, 1.0, 0.0]
    raw = np.concatenate([np.full(9, 100 / (1 + np.exp(-t))) for t in typical])
    steps = np.repeat(np.arange(6), 9)
    scale = fit_scale_map(raw, steps)
    np.testing.assert_allclose(scale.cuts, (4.0, 2.5, 1.5), atol=1e-6)
    at_cuts = scale.apply(100 / (1 + np.exp(-np.asarray(scale.cuts))))
    np.testing.assert_allclose(at_cuts, CUT_SCORES, atol=1e-6)


def test_the_map_is_strictly_increasing_and_bounded() -> None:
    scale = ScaleMap((4.0, 2.5, 1.5))
    raw = np.linspace(0, 100, 2001)
    out = scale.apply(raw)
    assert np.all(np.diff(out) > 0) and out[0] >= 0 and out[-1] <= 100
    assert np.all(np.isfinite(raw_logit(np.array([0.0, 100.0]))))


def test_the_ends_sit_where_the_network_stops_resolving_so_the_top_never_ties() -> None:
    """Until v0.12.0 the map reached 100 at logit 9.21 (raw 99.99) and stayed there: clean
    fundus photographs all read 100.00. Scores well above the A/B cut must stay apart at the
    report's two decimals up to logit 15, on the map of close cuts as on fundus', and 100 and 0
    are only reached at the logit clip; the bands are linear, so no slice changes grade."""
    logits = np.array([9.3, 9.6, 12.0, 15.0])
    for cuts in ((6.7, 3.9, 1.5), (2.15, 1.64, 1.01)):  # v0.12.0's fundus and MR, rounded
        scale = ScaleMap(cuts)
        out = np.round(scale.apply(100 / (1 + np.exp(-logits))), 2)
        assert np.all(np.diff(out) >= 0.3) and out[-1] < 100.0
        low = np.round(scale.apply(100 / (1 + np.exp(-np.array([-9.3, -9.6, -15.0])))), 2)
        assert np.all(np.diff(low) < 0) and low[-1] > 0.0
        sample = np.arange(-15.0, 15.0, 0.25) + 0.013  # none on a cut
        band = np.select([sample >= cuts[0], sample >= cuts[1], sample >= cuts[2]], [0, 1, 2], 3)
        out = scale.apply(100 / (1 + np.exp(-sample)))
        assert np.array_equal(band, np.select([out >= 80, out >= 60, out >= 40], [0, 1, 2], 3))
    assert scale.apply(np.array([100.0]))[0] == pytest.approx(100.0)
    assert raw_logit(np.array([100.0]))[0] == pytest.approx(np.log((1 - 1e-7) / 1e-7))


def test_a_step_whose_median_rises_is_held_below_the_previous_one() -> None:
    typical = [6.0, 5.0, 5.5, 2.0, 1.0, 0.0]  # step 2 looks cleaner than step 1
    raw = np.concatenate([np.full(5, 100 / (1 + np.exp(-t))) for t in typical])
    scale = fit_scale_map(raw, np.repeat(np.arange(6), 5))
    assert scale.valid() and scale.cuts[0] < 5.0


def test_saturated_modalities_get_their_own_cuts_and_sparse_ones_the_pooled_map() -> None:
    rng = np.random.default_rng(0)
    results = (ladders(rng, "FUNDUS", 8, [7.5, 7.0, 5.0, 3.5, 2.5, 2.0], 0.2)
               + ladders(rng, "CT", 8, [4.0, 2.5, 1.5, 0.5, -0.5, -1.0], 0.2)
               + ladders(rng, "NM", 1, [4.0, 3.0, 2.0, 1.0, 0.0, -1.0], 0.2))
    calibration = fit_calibration(step_samples(results), "synthetic")
    assert set(calibration.maps) == {"FUNDUS", "CT", POOLED}
    fundus_step2 = 100 / (1 + np.exp(-5.0))  # 99.3 raw: grade A on the raw bands
    assert 60 <= calibration.apply(np.array([fundus_step2]), "FUNDUS")[0] < 80  # B here
    assert calibration.map_for("NM") is calibration.maps[POOLED]
    assert np.isnan(calibration.apply(np.array([np.nan]), "CT")[0])


def test_crossfitted_grades_follow_the_steps_where_the_score_separates_them() -> None:
    rng = np.random.default_rng(1)
    results = ladders(rng, "FUNDUS", 16, [7.5, 7.0, 5.0, 3.5, 2.5, 2.0], 0.1)
    check = crossfit_check(step_samples(results))
    assert check["calibrated"]["FUNDUS"]["balanced_accuracy_reject"] > 0.95
    assert check["raw"]["FUNDUS"]["steps_3_5_graded_C_or_D"] == 0.0  # raw 88-97: A and B only


def test_saved_maps_round_trip_and_a_decreasing_map_is_refused(tmp_path) -> None:
    calibration = Calibration({POOLED: ScaleMap((3.0, 2.0, 1.0)), "MR": ScaleMap((2.0, 1.0, 0.5))},
                              "test")
    calibration.save(tmp_path)
    back = Calibration.load(tmp_path)
    assert back is not None and back.maps == calibration.maps
    data = json.loads((tmp_path / "calibration.json").read_text())
    data["maps"]["MR"]["cuts"] = [0.5, 1.0, 2.0]
    (tmp_path / "calibration.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not increasing"):
        Calibration.load(tmp_path)
    assert Calibration.load(tmp_path / "absent") is None
