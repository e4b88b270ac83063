"""Publishing a run as shipped weights, and the model card written from its logs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from mediqa_train.card import publish, write_card
from mediqa_train.config import RunConfig
from mediqa_train.corpus import build_corpus
from mediqa_train.pretrain import load_pool, pretrain

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.weights import load_weights, sha256_file

SOURCES = ["pydicom:CT_small", "pydicom:693_UNCR", "pydicom:MR_small", "nibabel:anatomical",
           "skimage:retina"]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("card")
    corpus = root / "corpus"
    build_corpus(str(corpus), sources=SOURCES, max_side=64, seed=0, log=lambda _: None)
    run = RunConfig.from_dict({
        "model": ModelConfig.tiny().to_dict(),
        "data": {"crop_min": 32, "crop_max": 64, "ct_crop_max": 48, "max_tokens": 256,
                 "shading_weight": 0.35},
        "optim": {"lr": 1e-3, "warmup_steps": 1, "steps": 4}, "workers": 0, "log_every": 1,
        "ckpt_every": 2, "val_every": 2, "val_examples": 4, "val_ladders_per_modality": 1,
        "select_best": True})
    run_dir = root / "runs" / "tiny"
    pool = load_pool(str(corpus), "train")
    pretrain(run, run_dir, pool, load_pool(str(corpus), "val") or pool, echo=None,
             card={"training_command": f"mediqa-train pretrain --config tiny --out {run_dir}"})
    weights = publish(run_dir, root / "weights", str(corpus), version="9.9.9", n_check=4)
    write_card(weights, corpus)
    return weights, run_dir, corpus


def test_published_weights_load_verified_and_carry_the_corpus(
        published: tuple[Path, Path, Path]) -> None:
    weights, _, corpus = published
    _, card = load_weights(weights)
    assert card["version"] == "9.9.9"
    assert card["sha256"] == sha256_file(weights / "model.safetensors")
    assert card["corpus"]["manifest_sha256"] == sha256_file(corpus / "manifest.jsonl")
    assert card["corpus"]["n_slices"] == json.loads(
        (corpus / "summary.json").read_text())["n_slices"]
    assert (weights / "training_log.jsonl").read_text() == \
        (published[1] / "metrics.jsonl").read_text()


def test_card_names_the_run_to_publish_and_the_step_and_weights_shipped(
        published: tuple[Path, Path, Path]) -> None:
    weights, run_dir, _ = published
    text = (weights / "MODEL_CARD.md").read_text()
    _, card = load_weights(weights)
    assert f"publish --run {run_dir} --out weights" in text
    assert card["sha256"] in text
    chosen = card["training"]["selected_step"]
    assert f"Shipped: step {chosen}, live weights" in text


def test_the_card_describes_the_target_its_recipe_trained_on(
        published: tuple[Path, Path, Path], tmp_path: Path) -> None:
    weights, _, corpus = published
    _, card = load_weights(weights)
    assert "0.35" in card["score_meaning"]
    text = (weights / "MODEL_CARD.md").read_text()
    assert "times 1 - 0.35 x the severity of any simulated smooth bias field" in text
    assert "Shading enters the target" in text and "barely moves" not in text
    # The same card with the SSIM-only recipe of weights up to v0.2.0.
    legacy = tmp_path / "legacy"
    shutil.copytree(weights, legacy)
    card["training"]["run_config"]["data"]["shading_weight"] = 0.0
    (legacy / "model_card.json").write_text(json.dumps(card))
    text = write_card(legacy, corpus).read_text()
    assert "barely moves" in text and "Shading enters the target" not in text


def test_two_runs_publish_as_one_ensemble_with_both_runs_on_the_card(
        published: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from mediqa_cli.model.ensemble import MedIQAEnsemble

    _, run_dir, corpus = published
    # A second "run": the first one's folder with the other checkpoint's weights, so the two
    # members differ without a second pre-training.
    second = tmp_path / "tiny_seed1"
    shutil.copytree(run_dir, second)
    card_path = second / "weights" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["training"]["run_config"]["seed"] = 1
    card["training_command"] = f"mediqa-train pretrain --config tiny --out {second} --seed 1"
    card_path.write_text(json.dumps(card))
    weights = publish([run_dir, second], tmp_path / "ens", str(corpus), version="9.9.9-e",
                      n_check=4)
    model, ens_card = load_weights(weights)
    assert isinstance(model, MedIQAEnsemble) and ens_card["members"] == 2
    assert [m["seed"] for m in ens_card["ensemble_members"]] == [0, 1]
    assert (weights / "training_log.member1.jsonl").read_text() == \
        (second / "metrics.jsonl").read_text()
    write_card(weights, corpus)
    text = (weights / "MODEL_CARD.md").read_text()
    assert f"publish --run {run_dir} --run {second} --out weights" in text
    assert f"--out {second} --seed 1" in text
    assert "An ensemble of 2 networks" in text and "ensemble member 1: the same recipe with " \
        "seed 1" in text
    # One network of the two runs: a plain folder naming only the run it came from.
    alone = publish([run_dir, second], tmp_path / "alone", str(corpus), version="9.9.9-a",
                    n_check=4, member_indices=[1])
    model, alone_card = load_weights(alone)
    assert not isinstance(model, MedIQAEnsemble) and "ensemble_members" not in alone_card
    assert alone_card["training"]["run_config"]["seed"] == 1
    assert (alone / "training_log.jsonl").read_text() == (second / "metrics.jsonl").read_text()
    assert not (alone / "training_log.member1.jsonl").exists()
    assert "An ensemble of" not in write_card(alone, corpus).read_text()


def _snapshot_run(corpus: Path, run_dir: Path, shading_weight: float = 0.0) -> Path:
    """A tiny 4-step run with 2 cosine cycles and their ends kept (steps 2 and 4)."""
    run = RunConfig.from_dict({
        "model": ModelConfig.tiny().to_dict(),
        "data": {"crop_min": 32, "crop_max": 64, "ct_crop_max": 48, "max_tokens": 256,
                 "shading_weight": shading_weight},
        "optim": {"lr": 1e-3, "warmup_steps": 1, "steps": 4, "cycles": 2}, "workers": 0,
        "log_every": 1, "ckpt_every": 2, "val_every": 1, "val_examples": 4,
        "val_ladders_per_modality": 1, "snapshot_ensemble": True})
    pool = load_pool(str(corpus), "train")
    pretrain(run, run_dir, pool, load_pool(str(corpus), "val") or pool, echo=None,
             card={"training_command": f"mediqa-train pretrain --config snap --out {run_dir}"})
    return run_dir


def test_a_cycle_end_of_a_snapshot_run_joins_another_run_as_an_ensemble_member(
        published: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Why: the seed ensemble ships the first cycle end of longer runs next to a one-cycle run;
    the card must say which step of which run each member is and how to publish it again."""
    from mediqa_cli.model.ensemble import MedIQAEnsemble

    _, run_dir, corpus = published
    snap = _snapshot_run(corpus, tmp_path / "runs" / "snap", shading_weight=0.35)
    weights = publish([run_dir, snap], tmp_path / "mixed", str(corpus), version="9.9.9-m",
                      n_check=4, member_indices=[0, 1])
    model, card = load_weights(weights)
    assert isinstance(model, MedIQAEnsemble) and card["members"] == 2
    first, second = card["ensemble_members"]
    assert "cycle_ends" not in first  # a one-network run: nothing to pick from
    assert second["cycle_ends"] == [1] and second["cycles"] == 2
    assert second["selected_step"] == [2]
    text = write_card(weights, corpus).read_text()
    assert "the network at the end of cosine cycle 1 of 2 (step 2," in text
    assert f"publish --run {run_dir} --run {snap} --member 0 --member 1 --out weights" in text


def test_a_snapshot_run_publishes_as_the_ensemble_of_its_cycle_ends(
        published: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from mediqa_cli.model.ensemble import MedIQAEnsemble

    _, _, corpus = published
    run_dir = _snapshot_run(corpus, tmp_path / "runs" / "snap")
    weights = publish(run_dir, tmp_path / "weights", str(corpus), version="9.9.9-s", n_check=4)
    model, card = load_weights(weights)
    assert isinstance(model, MedIQAEnsemble) and card["members"] == 2
    assert "ensemble_members" not in card  # one run: its snapshots, not several runs
    text = write_card(weights, corpus).read_text()
    assert "A snapshot ensemble: the 2 networks one run left at the ends of its 2 cosine" in text
    assert "2 equal cosine cycles" in text and f"publish --run {run_dir} --out weights" in text
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    snaps = [r for r in rows if "snapshot" in r]
    assert [r["step"] for r in snaps] == [2, 4]
    assert ("Shipped: ensemble of the 2 cycle ends (live weights), " + ", ".join(
        f"step {r['step']} ({r['val_ladder_srcc_modality_mean']:.3f})" for r in snaps)) in text
    last = publish(run_dir, tmp_path / "last", str(corpus), version="9.9.9-l", n_check=4,
                   member_indices=[1])
    alone, alone_card = load_weights(last)
    assert not isinstance(alone, MedIQAEnsemble) and "members" not in alone_card
    assert all(torch.equal(v, model.members[1].state_dict()[k])
               for k, v in alone.state_dict().items())
    text = write_card(last, corpus).read_text()
    assert "Published from the runs' networks 1 only" in text and "ensemble of the" not in text
    assert alone_card["training"]["snapshot_steps"] == [4] and "validation" not in alone_card
    assert "Shipped: cycle end(s) 2 of a snapshot run, published alone, step 4 (" in text
    with pytest.raises(ValueError, match="--member"):
        publish(run_dir, tmp_path / "bad", str(corpus), "9.9.9-b", n_check=4,
                member_indices=[2])


def test_a_card_listing_cycle_ends_as_selected_step_is_read_as_snapshot_steps() -> None:
    from mediqa_train.card import _with_snapshot_steps

    early = {"training": {"steps": 12150, "selected_step": [3788, 7999, 12150]}}
    t = _with_snapshot_steps(early)["training"]
    assert t["selected_step"] == 12150 and t["snapshot_steps"] == [3788, 7999, 12150]
    plain = {"training": {"steps": 10, "selected_step": 8}}
    assert _with_snapshot_steps(plain) is plain


def test_card_refuses_accuracy_measured_on_the_val_sources(
        published: tuple[Path, Path, Path], tmp_path: Path) -> None:
    weights, _, corpus = published
    copy = Path(shutil.copytree(weights, tmp_path / "weights"))
    (copy / "metrics").mkdir(exist_ok=True)
    (copy / "metrics" / "accuracy.json").write_text(json.dumps({"split": "val"}))
    with pytest.raises(ValueError, match="val sources"):
        write_card(copy, corpus)


def test_targets_never_print_a_miss_as_the_threshold() -> None:
    from mediqa_train.card import _targets

    entry = {"model": 0.89989, "iqm_fber": 0.79}
    acc = {"ladders": {"by_modality": {"*": entry, "CT": entry,
                                       "MR": {"model": 0.899996, "iqm_fber": 0.8},
                                       "NM": {"model": 0.957, "iqm_fber": 0.6}}},
           "random_chains": {"context_head_metadata_removed": {"all": {"modality_acc": 0.9499}}}}
    lines = _targets(acc)
    assert "CT: within-ladder SRCC 0.8999 (MISSES >= 0.9" in lines[0]
    assert "MR: within-ladder SRCC 0.899996 (MISSES >= 0.9" in lines[1]
    assert "NM: within-ladder SRCC 0.957 (meets >= 0.9" in lines[2]
    assert "modality accuracy without metadata: 0.9499 (MISSES >= 0.95)" in lines[3]


def test_the_card_says_what_the_grades_mean_from_the_calibration_check(
        published: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from mediqa_train.card import CALIBRATION_CHECK

    weights, _, corpus = published
    copy = tmp_path / "weights"
    shutil.copytree(weights, copy)
    row = {"images": 12, "steps_0_1_graded_A": 0.9, "steps_3_5_graded_C_or_D": 0.25,
           "balanced_accuracy_reject": 0.6}
    better = {**row, "steps_3_5_graded_C_or_D": 0.75, "balanced_accuracy_reject": 0.8}
    (copy / "metrics").mkdir(exist_ok=True)
    (copy / "metrics" / CALIBRATION_CHECK).write_text(json.dumps(
        {"check": {"raw": {"FUNDUS": row}, "calibrated": {"FUNDUS": better}}}))
    text = write_card(copy, corpus).read_text()
    assert "## What the grades mean" in text
    assert "| FUNDUS | 12 | 0.90 → 0.90 | 0.25 → 0.75 | 0.60 → 0.80 |" in text


def test_the_card_names_each_reader_and_the_token_it_weighs_most(tmp_path):
    import numpy as np
    from mediqa_train.card import physics_head_lines

    from mediqa_cli.physics import N_PHYSICS, PHYSICS_FEATURES
    from mediqa_cli.physics_head import PhysicsHead, TokenReader

    assert physics_head_lines(tmp_path) == []  # no reader, no section
    weights = np.zeros(N_PHYSICS)
    weights[PHYSICS_FEATURES.index("efc")] = 0.7
    PhysicsHead({"MR": TokenReader(np.zeros(N_PHYSICS), np.ones(N_PHYSICS), weights)},
                fitted_on="a test").save(tmp_path)
    lines = physics_head_lines(tmp_path)
    assert "a test" in lines[0]
    assert [line for line in lines if line.startswith("| MR | efc +0.70")]
