"""`mediqa-train pretrain` and `finetune`: options reach the training functions, and the model
card records the command that reproduces the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mediqa_train.cli import app
from mediqa_train.corpus import build_corpus
from mediqa_train.rater import make_rated_set, write_labels
from typer.testing import CliRunner

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.weights import load_weights, save_weights
from tests.train.train_images import CorpusLikeItem as Item
from tests.train.train_images import real_image

runner = CliRunner()
SOURCES = ["pydicom:CT_small", "pydicom:MR_small", "nibabel:anatomical", "skimage:retina"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_corpus") / "corpus"
    build_corpus(str(root), sources=SOURCES, max_side=64, seed=0, log=lambda _: None)
    return root


def test_pretrain_runs_the_named_config_with_the_overrides_and_records_the_command(
        corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["pretrain", "--out", str(out), "--config", "smoke", "--corpus",
                                 str(corpus), "--max-steps", "2", "--threads", "1", "--seed",
                                 "5", "--exclude-family", "noise"])
    assert result.exit_code == 0, result.output
    _, card = load_weights(out / "weights")
    assert card["training_command"] == (
        f"mediqa-train pretrain --out {out} --config smoke --corpus {corpus} --device cpu "
        "--exclude-family noise --max-steps 2 --threads 1 --seed 5")
    run_config = card["training"]["run_config"]
    assert run_config["seed"] == 5 and run_config["data"]["exclude_families"] == ["noise"]
    assert card["training"]["steps"] == 2
    saved = json.loads((out / "run_config.json").read_text())
    assert saved == run_config


def test_pretrain_init_weights_replaces_the_configs_warm_start(
        corpus: Path, tmp_path: Path) -> None:
    """A chain's second stage starts from the first stage's output with the same config; 'none'
    trains from random weights a config that names a warm start."""
    config = json.loads((Path(__file__).resolve().parents[2] / "train" / "configs"
                         / "smoke.json").read_text())
    config["init_weights"] = str(tmp_path / "gone")
    named = tmp_path / "named.json"
    named.write_text(json.dumps(config))
    base = ["--config", str(named), "--corpus", str(corpus), "--max-steps", "1", "--threads", "1"]
    result = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "a"), *base])
    assert result.exit_code == 1 and "gone" in result.output  # the config's own start is read
    result = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "b"), *base,
                                 "--init-weights", "none"])
    assert result.exit_code == 0, result.output
    _, card = load_weights(tmp_path / "b" / "weights")
    assert card["training"]["run_config"]["init_weights"] is None
    result = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "c"), *base,
                                 "--init-weights", str(tmp_path / "b" / "weights")])
    assert result.exit_code == 0, result.output
    assert f"warm start from {tmp_path / 'b' / 'weights'}" in result.output
    _, card = load_weights(tmp_path / "c" / "weights")
    assert card["training"]["run_config"]["init_weights"] == str(tmp_path / "b" / "weights")
    assert card["training_command"].endswith(f"--init-weights {tmp_path / 'b' / 'weights'}")


def test_pretrain_refuses_an_unknown_family_and_a_missing_corpus(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "a"), "--corpus",
                                 str(tmp_path), "--exclude-family", "sparkle"])
    assert result.exit_code == 2 and "sparkle" in result.output
    result = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "b"), "--corpus",
                                 str(tmp_path / "none")])
    assert result.exit_code == 1 and "no corpus" in result.output


def test_finetune_passes_its_options_and_records_the_command(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = save_weights(MedIQANet(ModelConfig.tiny()), tmp_path / "base", card={"version": "t"})
    pool = [Item(*real_image(m), m, a, f"t:{m}")
            for m, a in (("MR", "upper_limb"), ("FUNDUS", "eye"), ("XR", "chest"))]
    labels = write_labels(make_rated_set(pool, 6, tmp_path / "data", ModelConfig.tiny(), seed=0),
                          tmp_path / "data" / "labels.csv")
    out = tmp_path / "tuned"
    result = runner.invoke(app, ["finetune", "--labels", str(labels), "--base", str(base),
                                 "--out", str(out), "--folds", "0", "--epochs", "1", "--lr",
                                 "0.002", "--seed", "3", "--lower-is-better"])
    assert result.exit_code == 0, result.output
    _, card = load_weights(out)
    assert card["recipe"]["lr"] == 0.002 and card["recipe"]["seed"] == 3
    assert card["labels"]["lower_is_better"] is True and card["cross_validation"] is None
    assert card["training_command"] == (
        f"mediqa-train finetune --labels {labels} --out {out} --base {base} --folds 0 "
        "--epochs 1 --lr 0.002 --unfreeze-last 0 --seed 3 --device cpu --lower-is-better")
    missing = runner.invoke(app, ["finetune", "--labels", str(tmp_path / "none.csv"), "--base",
                                  str(base), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 1


def test_exposure_floor_writes_floors_beside_the_readers_and_needs_a_calibration(
        corpus: Path, tmp_path: Path) -> None:
    """The bound is the median clean display mean / 4 and a stop costs one grade band of the
    calibration in the folder; readers already there are kept."""
    import numpy as np
    from mediqa_train.domain_profile import corpus_measures

    from mediqa_cli.calibration import Calibration, ScaleMap
    from mediqa_cli.physics import N_PHYSICS, PHYSICS_FEATURES
    from mediqa_cli.physics_head import PhysicsHead, TokenReader

    folder = tmp_path / "w"
    folder.mkdir()
    args = ["exposure-floor", "--weights", str(folder), "--corpus", str(corpus),
            "--modality", "FUNDUS"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "calibration" in refused.output
    Calibration({"*": ScaleMap((4.0, 3.0, 1.0)), "FUNDUS": ScaleMap((6.0, 4.0, 2.0))}).save(folder)
    zero = np.zeros(N_PHYSICS)
    PhysicsHead({"MR": TokenReader(zero, np.ones(N_PHYSICS), zero, 0.5)},
                fitted_on="MR: ladders").save(folder)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    head = PhysicsHead.load(folder)
    level = corpus_measures(corpus, ("train", "val", "test"), 10**6)["FUNDUS"][
        :, PHYSICS_FEATURES.index("display_mean")]
    assert head.floors["FUNDUS"].bound == pytest.approx(np.median(level) / 4, rel=1e-6)
    assert head.floors["FUNDUS"].per_stop == pytest.approx(2.0)
    assert set(head.readers) == {"MR"} and head.fitted_on.startswith("MR: ladders; exposure")
    assert "pooled cuts" not in head.fitted_on
    Calibration({"*": ScaleMap((4.0, 3.0, 1.0))}).save(folder)  # no FUNDUS map: the pooled one
    assert runner.invoke(app, args).exit_code == 0
    pooled = PhysicsHead.load(folder)
    assert pooled.floors["FUNDUS"].per_stop == pytest.approx(1.5)
    assert "FUNDUS" in pooled.fitted_on and "pooled cuts" in pooled.fitted_on
    assert pooled.fitted_on.count("exposure floors") == 1
    unknown = runner.invoke(app, [*args[:-1], "NM"])
    assert unknown.exit_code == 1 and "no NM slices" in unknown.output
