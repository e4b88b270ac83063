"""Severity ladders: clean first, one artefact at rising strength, scored by rank."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mediqa_train.batches import BatchRecipe
from mediqa_train.ladders import (
    SEVERITIES,
    LadderSet,
    build_ladders,
    family_simulators,
    ladder_srcc,
    simulator_ladder,
)
from mediqa_train.quality import reference_quality

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from tests.train.train_images import CorpusLikeItem as Item
from tests.train.train_images import real_image

RECIPE = BatchRecipe(crop_min=32, crop_max=64, ct_crop_max=48)


@pytest.fixture(scope="module")
def pool() -> list[Item]:
    return [Item(*real_image(m), m, a, f"test:{m}") for m, a in (("MR", "upper_limb"),
                                                                   ("XR", "chest"))]


def test_ladder_srcc_reads_falling_scores_as_perfect_order() -> None:
    assert ladder_srcc([90, 80, 70, 60, 50, 40]) == pytest.approx(1.0)
    assert ladder_srcc([40, 50, 60, 70, 80, 90]) == pytest.approx(-1.0)
    assert math.isnan(ladder_srcc([1.0, float("nan"), 0.0]))


def test_every_family_of_a_modality_gets_a_ladder_of_rising_damage(pool: list[Item]) -> None:
    ladders = build_ladders(pool, ModelConfig.tiny(), RECIPE, per_modality=1, seed=0)
    for modality in ("MR", "XR"):
        fams = {lad.family for lad in ladders if lad.modality == modality}
        assert fams == set(family_simulators(modality))
    for lad in ladders:
        assert len(lad.images) == len(SEVERITIES) + 1
        assert all(im.shape == lad.images[0].shape for im in lad.images)
        quality = [reference_quality(lad.images[0], im, lad.modality) for im in lad.images[1:]]
        # The physics target falls (weakly) along the ladder: the strongest is the worst.
        assert quality[-1] <= quality[0] + 1e-6, (lad.simulator, quality)
        # Each rung carries the severity of a smooth field (what SSIM cannot see), else 0.
        assert len(lad.shading) == len(lad.images) and lad.shading[0] == 0.0
        if lad.simulator == "mr_bias":
            assert lad.shading[1:] == sorted(lad.shading[1:]) and lad.shading[1] > 0.1
            assert lad.shading[-1] == pytest.approx(1.0)
        else:
            assert not any(lad.shading), lad.simulator


def test_ladder_set_scores_per_modality_and_is_deterministic(pool: list[Item]) -> None:
    config = ModelConfig.tiny()
    torch.manual_seed(0)
    model = MedIQANet(config).eval()
    a = LadderSet(pool, config, RECIPE, per_modality=1, seed=3)
    b = LadderSet(pool, config, RECIPE, per_modality=1, seed=3)
    sa, sb = a.score(model, torch.device("cpu")), b.score(model, torch.device("cpu"))
    assert sa == sb
    assert {"val_ladder_srcc_MR", "val_ladder_srcc_XR"} <= set(sa)
    assert -1.0 <= sa["val_ladder_srcc"] <= 1.0
    assert sa["val_ladder_srcc_modality_mean"] == pytest.approx(
        np.mean([sa["val_ladder_srcc_MR"], sa["val_ladder_srcc_XR"]]))


def test_excluded_families_get_no_ladder(pool: list[Item]) -> None:
    recipe = BatchRecipe(crop_min=32, crop_max=64, exclude_families=("blur", "noise"))
    ladders = build_ladders(pool, ModelConfig.tiny(), recipe, per_modality=1, seed=0)
    assert ladders and not {lad.family for lad in ladders} & {"blur", "noise"}


def test_simulator_ladder_keeps_the_readers_layout_and_grows_the_fault():
    """Why: the benchmarks put it beside a stick ladder and measure both with the same code, so
    a colour slice must come back as (H, W, 3), not the simulators' (3, H, W)."""
    rng = np.random.default_rng(0)
    colour = rng.uniform(0.0, 255.0, (48, 40, 3)).astype(np.float32)
    steps = simulator_ladder(colour, (1.0, 1.0), "photo_defocus", seed=3)
    assert len(steps) == 1 + len(SEVERITIES) and steps[0] is colour
    assert all(s.shape == (48, 40, 3) for s in steps)
    spread = [float(np.std(s)) for s in steps]  # defocus smooths: the spread only falls
    assert all(b < a for a, b in zip(spread, spread[1:], strict=False))


def test_by_simulator_splits_the_modality_mean_and_reads_the_target(pool: list[Item]) -> None:
    """The per-simulator rows average back to `score`'s per-modality figure, and the target's
    SRCC is that of reference_quality along each ladder (it falls as the fault grows)."""
    config = ModelConfig.tiny()
    torch.manual_seed(0)
    model = MedIQANet(config).eval()
    ladders = LadderSet(pool, config, RECIPE, per_modality=2, seed=3)
    rows = ladders.by_simulator(model, torch.device("cpu"))
    summary = ladders.score(model, torch.device("cpu"))
    for modality in ("MR", "XR"):
        mine = [r for r in rows if r.modality == modality]
        assert sum(r.ladders for r in mine) == sum(
            lad.modality == modality for lad in ladders.ladders)
        weighted = sum(r.model_srcc * r.ladders for r in mine) / sum(r.ladders for r in mine)
        assert weighted == pytest.approx(summary[f"val_ladder_srcc_{modality}"])
    noise = next(r for r in rows if r.simulator == "mr_noise")
    assert noise.target_srcc > 0.8
