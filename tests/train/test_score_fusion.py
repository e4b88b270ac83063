"""benchmarks/score_fusion.py: the family-blind fusion, and alpha 0 being accuracy.py's column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mediqa_train.batches import BatchRecipe

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from tests.benchmark_scripts import load_benchmark
from tests.train.train_images import CorpusLikeItem as Item
from tests.train.train_images import real_image

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """score_fusion.py imports accuracy.py as its sibling, as when run as a script."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_fusion_subtracts_the_severities_above_the_floor_in_score_points() -> None:
    fusion = load_benchmark("score_fusion")
    quality = np.array([90.0, 80.0])
    severities = np.array([[0.1, 0.2], [0.0, 0.5]])
    np.testing.assert_allclose(fusion.fused(quality, severities, 0.0), quality)
    np.testing.assert_allclose(fusion.fused(quality, severities, 2.0), [30.0, -20.0])
    floor = np.array([0.15, 0.1])  # the first family's 0.1 and 0.0 sit under it: no penalty
    np.testing.assert_allclose(fusion.fused(quality, severities, 2.0, floor), [70.0, 0.0])


def test_alpha_zero_is_the_accuracy_benchmarks_model_column() -> None:
    fusion, accuracy = load_benchmark("score_fusion"), load_benchmark("accuracy")
    pool = [Item(*real_image("XR"), "XR", "chest", "test:XR")]
    torch.manual_seed(0)
    model = MedIQANet(ModelConfig.tiny()).eval()
    recipe = BatchRecipe(crop_min=32, crop_max=64)
    n_families = len(model.config.families)
    floor = fusion.clean_floor(model, pool, recipe, 4, 0, 0.9)
    assert floor.shape == (n_families,) and ((floor > 0) & (floor < 1)).all()
    table, penalties = fusion.fusion_table(model, pool, recipe, 1, 0, floor)
    rows = accuracy.ladders(model, pool, 1, 0, recipe)
    summary = accuracy.summarise_ladders(rows)
    assert np.isclose(table["XR"]["alpha 0"], summary["by_modality"]["XR"]["model"])
    assert np.isclose(table["modality mean"]["alpha 0"], table["XR"]["alpha 0"])
    assert set(table["all"]) == set(fusion.fusion_columns(floor))
    assert (penalties["alpha 0"] == 0).all() and penalties["alpha 1"].shape == (len(rows),)
    # Above the floor never costs more than the raw sum (sigmoid heads: under 100 per family).
    assert (penalties["alpha 1 floor"] <= penalties["alpha 1"] + 1e-9).all()
    assert (penalties["alpha 1"] < 100 * n_families).all()
