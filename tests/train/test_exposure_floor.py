"""The exposure floors' fit: bound from the clean corpus' level, price from the calibration."""

from __future__ import annotations

import numpy as np
import pytest
from mediqa_train.exposure_floor import floor_for, with_floors

from mediqa_cli.physics import N_PHYSICS
from mediqa_cli.physics_head import ExposureFloor, PhysicsHead, TokenReader


def test_the_bound_is_stops_below_the_median_and_a_stop_costs_one_grade_band():
    levels = np.array([0.2, 0.4, 0.8, np.nan, 0.0])  # missing and black slices do not count
    floor = floor_for(levels, cuts=(6.0, 4.0, 2.0))
    assert floor.bound == pytest.approx(0.4 / 4) and floor.per_stop == pytest.approx(2.0)
    assert floor_for(levels, (6.0, 4.0, 2.0), stops_below=1.0).bound == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no clean slice"):
        floor_for(np.array([np.nan]), (6.0, 4.0, 2.0))
    with pytest.raises(ValueError, match="fall"):
        floor_for(levels, (2.0, 4.0, 6.0))


def test_floors_join_a_head_without_touching_its_readers_and_replace_older_floors():
    zero = np.zeros(N_PHYSICS)
    reader = TokenReader(zero, np.ones(N_PHYSICS), zero, offset=0.5)
    head = PhysicsHead({"MR": reader}, fitted_on="MR: ladders",
                       floors={"HISTO": ExposureFloor(0.2, 1.0)})
    first = with_floors(head, {"FUNDUS": ExposureFloor(0.1, 2.0)}, "exposure floors FUNDUS: a")
    again = with_floors(first, {"FUNDUS": ExposureFloor(0.09, 2.5)}, "exposure floors FUNDUS: b")
    assert again.readers == {"MR": reader}
    assert again.floors == {"HISTO": ExposureFloor(0.2, 1.0), "FUNDUS": ExposureFloor(0.09, 2.5)}
    assert again.fitted_on == "MR: ladders; exposure floors FUNDUS: b"
    alone = with_floors(None, {"FUNDUS": ExposureFloor(0.1, 2.0)}, "exposure floors FUNDUS: a")
    assert alone.readers == {} and alone.floors["FUNDUS"].per_stop == 2.0
    refit = with_floors(alone, {"FUNDUS": ExposureFloor(0.09, 2.5)}, "exposure floors FUNDUS: b")
    assert refit.fitted_on == "exposure floors FUNDUS: b"
    both = with_floors(None, {"FUNDUS": ExposureFloor(0.1, 2.0), "HISTO": ExposureFloor(0.2, 1.0)},
                       "exposure floors FUNDUS, HISTO: a")
    partial = with_floors(both, {"FUNDUS": ExposureFloor(0.09, 2.5)}, "exposure floors FUNDUS: b")
    assert partial.fitted_on == "exposure floors FUNDUS, HISTO: a; exposure floors FUNDUS: b"
    pair = {"FUNDUS": ExposureFloor(0.1, 2.0), "HISTO": ExposureFloor(0.2, 1.0)}
    whole = with_floors(partial, pair, "exposure floors FUNDUS, HISTO: c")
    assert whole.fitted_on == "exposure floors FUNDUS, HISTO: c"
