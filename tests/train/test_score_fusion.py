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


def test_fusion_subtracts_the_summed_severities_scaled_to_score_points() -> None:
    fusion = load_benchmark("score_fusion")
    quality = np.array([90.0, 80.0])
    severities = np.array([[0.1, 0.2], [0.0, 0.5]])
    np.testing.assert_allclose(fusion.fused(quality, severities, 0.0), quality)
    np.testing.assert_allclose(fusion.fused(quality, severities, 2.0), [30.0, -20.0])


def test_alpha_zero_is_the_accuracy_benchmarks_model_column() -> None:
    fusion, accuracy = load_benchmark("score_fusion"), load_benchmark("accuracy")
    pool = [Item(*real_image("XR"), "XR", "chest", "test:XR")]
    torch.manual_seed(0)
    model = MedIQANet(ModelConfig.tiny()).eval()
    recipe = BatchRecipe(crop_min=32, crop_max=64)
    table, clean_sums = fusion.fusion_table(model, pool, recipe, 1, 0)
    rows = accuracy.ladders(model, pool, 1, 0, recipe)
    summary = accuracy.summarise_ladders(rows)
    assert np.isclose(table["XR"]["alpha 0"], summary["by_modality"]["XR"]["model"])
    assert np.isclose(table["modality mean"]["alpha 0"], table["XR"]["alpha 0"])
    assert set(table["all"]) == {f"alpha {a:g}" for a in fusion.ALPHAS} | {"severity sum alone"}
    n_families = len(model.config.families)
    assert clean_sums.shape == (len(rows),)
    assert ((clean_sums > 0) & (clean_sums < n_families)).all()  # sigmoid heads, one per family
