"""benchmarks/accuracy.py: ladders scored by the model, other networks and every IQM."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from tests.benchmark_scripts import load_benchmark
from tests.train.train_images import CorpusLikeItem as Item
from tests.train.train_images import real_image

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy.py"


@pytest.fixture(scope="module")
def accuracy() -> ModuleType:
    return load_benchmark("accuracy")


def test_ladders_carry_model_other_and_iqm_scores_per_rung(accuracy: ModuleType) -> None:
    from mediqa_train.batches import BatchRecipe

    pool = [Item(*real_image("XR"), "XR", "chest", "test:XR")]
    config = ModelConfig.tiny()
    torch.manual_seed(0)
    model, other = MedIQANet(config).eval(), MedIQANet(config).eval()
    recipe = BatchRecipe(crop_min=32, crop_max=64)
    rows = accuracy.ladders(model, pool, 1, 0, recipe, others={"random init": other})
    assert rows and all(r["modality"] == "XR" for r in rows)
    for r in rows:
        assert len(r["scores"]) == len(r["physics"]) == len(r["others"]["random init"]) == 6
        assert len(r["family_head"]) == 6 and all(-1.0 <= v <= 0.0 for v in r["family_head"])
        assert set(r["iqms"]) == set(accuracy.IQM_DIRECTION)
    table = accuracy.summarise_ladders(rows)
    entry = table["by_modality"]["XR"]
    assert entry["n"] == len(rows)
    assert -1.0 <= entry["random init"] <= 1.0 and -1.0 <= entry["model"] <= 1.0
    assert math.isfinite(entry["physics"]) and entry["physics"] > 0.5
    assert -1.0 <= entry["family_head"] <= 1.0
    results = {"ladders": table, "clean": {},
               "random_chains": {"metadata_known": {}, "metadata_removed": {},
                                 "context_head_metadata_removed": {}}}
    text = accuracy.markdown(results)
    assert "own phys_* column" in text and "test sources" in text and "val sources" not in text
    assert "val sources" in accuracy.markdown({**results, "split": "val"})  # --split val


def test_held_out_family_table_marks_the_excluded_family(
    accuracy: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mediqa_train.batches import BatchRecipe

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    held = load_benchmark("held_out_family")
    pool = [Item(*real_image("XR"), "XR", "chest", "test:XR")]
    config = ModelConfig.tiny()
    torch.manual_seed(0)
    model, without = MedIQANet(config).eval(), MedIQANet(config).eval()
    rows = accuracy.ladders(model, pool, 1, 0, BatchRecipe(crop_min=32, crop_max=64),
                            others={held.WITHOUT: without})
    text = held.markdown({"family": "blur", "ladders": accuracy.summarise_ladders(rows)})
    assert "| **blur** |" in text and "| noise |" in text
    assert "| XR/blur |" in text


def test_random_chains_count_which_modality_a_wrong_guess_named(accuracy: ModuleType) -> None:
    from mediqa_train.batches import BatchRecipe

    pool = [Item(*real_image(m), m, a, f"test:{m}") for m, a in (("XR", "chest"), ("MR", "head"))]
    torch.manual_seed(0)
    model = MedIQANet(ModelConfig.tiny()).eval()
    out = accuracy.random_chains(model, pool, 12, 0, BatchRecipe(crop_min=32, crop_max=64),
                                 n_boot=20)
    context = out["context_head_metadata_removed"]
    for name in ("XR", "MR"):
        e = context[name]
        wrong = e["modality_mistaken_for"]
        assert name not in wrong and set(wrong) <= set(model.config.modalities)
        assert sum(wrong.values()) == round(e["n"] * (1 - e["modality_acc"]))
    assert sum(context["all"]["modality_mistaken_for"].values()) == sum(
        sum(context[m]["modality_mistaken_for"].values()) for m in ("XR", "MR"))
    context["MR"] = {"n": 5, "modality_acc": 0.4, "anatomy_acc": 1.0,
                     "modality_mistaken_for": {"CT": 2, "XR": 1}}
    text = accuracy.markdown({"ladders": {"by_modality": {}, "by_family": {}},
                              "random_chains": out, "clean": {}})
    assert "| MR | 5 | 0.400 | CT 2, XR 1 | 1.000 |" in text


def test_mean_scores_of_two_networks_are_a_column_of_their_own(accuracy: ModuleType) -> None:
    rows = [{"modality": "XR", "family": "noise", "scores": [90, 80, 70, 60, 50, 40],
             "physics": [100, 90, 80, 70, 60, 50], "iqms": {k: [1.0] * 6
                                                           for k in accuracy.IQM_DIRECTION},
             "others": {"old": [50, 60, 70, 80, 85, 86]}}]
    accuracy.add_mean_scores(rows, ["old"])
    assert rows[0]["others"]["old + model (mean)"] == [70, 70, 70, 70, 67.5, 63]
    entry = accuracy.summarise_ladders(rows)["by_modality"]["XR"]
    assert entry["model"] == pytest.approx(1.0) and entry["old"] == pytest.approx(-1.0)
    assert 0.0 < entry["old + model (mean)"] < 1.0


def test_ladders_scored_over_mirror_views_average_the_views(accuracy: ModuleType) -> None:
    from mediqa_train.batches import BatchRecipe
    from mediqa_train.ladders import build_ladders, example_of
    from mediqa_train.pretrain import predict

    from mediqa_cli.views import flip_views

    pool = [Item(*real_image("XR"), "XR", "chest", "test:XR")]
    torch.manual_seed(0)
    model = MedIQANet(ModelConfig.tiny()).eval()
    recipe = BatchRecipe(crop_min=32, crop_max=64)
    lad = build_ladders(pool, model.config, recipe, 1, 0)[0]
    two = accuracy.predict_averaged(
        model, accuracy.ladder_view_examples(lad, model.config, recipe, 2))["quality"]
    one = accuracy.predict_averaged(
        model, accuracy.ladder_view_examples(lad, model.config, recipe, 1))["quality"]
    mirrored = [example_of(flip_views(im, 2, axes=(-2, -1))[1], lad.spacing, lad.modality,
                           lad.anatomy, model.config, recipe) for im in lad.images]
    flipped = predict(model, mirrored, torch.device("cpu"))["quality"]
    assert np.allclose(two, (one + flipped) / 2, atol=1e-4)
    assert not np.allclose(one, flipped)


def test_one_view_is_the_plain_prediction_and_ids_follow_the_mean_logits(
        accuracy: ModuleType) -> None:
    from mediqa_train.batches import BatchRecipe
    from mediqa_train.ladders import build_ladders, ladder_examples
    from mediqa_train.pretrain import predict

    pool = [Item(*real_image("MR"), "MR", "head", "test:MR")]
    torch.manual_seed(0)
    model = MedIQANet(ModelConfig.tiny()).eval()
    recipe = BatchRecipe(crop_min=32, crop_max=64)
    lad = build_ladders(pool, model.config, recipe, 1, 0)[0]
    plain = predict(model, ladder_examples(lad, model.config, recipe), torch.device("cpu"))
    one = accuracy.predict_averaged(model, accuracy.ladder_view_examples(lad, model.config,
                                                                         recipe, 1))
    for key in ("quality", "severities", "modality_logits", "modality"):
        assert np.allclose(one[key], plain[key])
    four = accuracy.predict_averaged(model, accuracy.ladder_view_examples(lad, model.config,
                                                                          recipe, 4))
    assert np.array_equal(four["modality"], four["modality_logits"].argmax(1))
    assert np.array_equal(four["anatomy"], four["anatomy_logits"].argmax(1))
