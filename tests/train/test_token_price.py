"""The token prices' setting: centre and scale from the clean corpus, the price registered."""

from __future__ import annotations

import numpy as np
import pytest
from mediqa_train.exposure_floor import with_floors
from mediqa_train.physics_head import kept_clauses
from mediqa_train.token_price import price_for, with_prices

from mediqa_cli.physics import N_PHYSICS
from mediqa_cli.physics_head import ExposureFloor, PhysicsHead, TokenPrice, TokenReader


def test_the_price_is_centred_on_the_clean_median_and_scaled_by_their_sd():
    clean = np.array([-2.0, -1.5, -1.0, np.nan])  # a slice without the measure does not count
    price = price_for(clean, "bias", per_sd=0.5)
    assert price.measure == "bias" and price.centre == pytest.approx(-1.5)
    assert price.per_unit == pytest.approx(0.5 / np.std([-2.0, -1.5, -1.0]))
    with pytest.raises(ValueError, match="too few"):
        price_for(np.array([1.0, 1.0, np.nan]), "bias", 0.5)
    with pytest.raises(ValueError, match="non-negative"):
        price_for(clean, "bias", -1.0)


def test_prices_and_floors_keep_each_other_and_the_readers_through_their_refits():
    zero = np.zeros(N_PHYSICS)
    reader = TokenReader(zero, np.ones(N_PHYSICS), zero, offset=0.5)
    head = PhysicsHead({"MR": reader}, fitted_on="MR: ladders",
                       floors={"FUNDUS": ExposureFloor(0.1, 2.0)})
    first = with_prices(head, {"MR": TokenPrice("bias", -1.4, 1.2)}, "token prices MR: a")
    again = with_prices(first, {"MR": TokenPrice("bias", -1.4, 2.4)}, "token prices MR: b")
    assert again.readers == {"MR": reader} and again.floors == head.floors
    assert again.prices == {"MR": TokenPrice("bias", -1.4, 2.4)}
    assert again.fitted_on == "MR: ladders; token prices MR: b"
    floored = with_floors(again, {"FUNDUS": ExposureFloor(0.09, 2.5)}, "exposure floors FUNDUS: c")
    assert floored.prices == again.prices
    assert floored.fitted_on == "MR: ladders; token prices MR: b; exposure floors FUNDUS: c"
    alone = with_prices(None, {"MR": TokenPrice("bias", -1.4, 1.2)}, "token prices MR: a")
    assert alone.readers == {} and alone.prices["MR"].per_unit == 1.2


def test_a_clause_naming_a_modality_still_in_use_is_kept():
    fitted_on = "MR: ladders; token prices MR, CT: a; token prices US: b"
    assert kept_clauses(fitted_on, "token prices ", {"MR"}) == fitted_on.split("; ")
    assert kept_clauses(fitted_on, "token prices ", {"MR", "CT"}) == [
        "MR: ladders", "token prices US: b"]
