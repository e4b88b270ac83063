"""Expert fine-tuning and the SIMULATED rater: labels.csv in, a verified weights folder out."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from mediqa_train.finetune import (
    finetune,
    fit_mixture,
    label_map,
    prepare_labelled,
    train_scorer,
)
from mediqa_train.rater import make_rated_set, rater_score, write_labels

from mediqa_cli.labels import read_labels
from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.weights import load_weights, save_weights
from mediqa_cli.physics_head import PHYSICS_HEAD_FILE
from mediqa_cli.taxonomy import PHYSICAL_FAMILIES
from tests.train.train_images import CorpusLikeItem as Item
from tests.train.train_images import real_image


def sev(**families: float) -> np.ndarray:
    return np.array([families.get(f, 0.0) for f in PHYSICAL_FAMILIES])


def test_simulated_rater_gives_clean_images_the_top_score_and_falls_with_severity() -> None:
    assert rater_score(sev(), "MR") == pytest.approx(5.0)
    for family in ("noise", "motion", "blur"):
        scores = [rater_score(sev(**{family: s}), "MR") for s in (0.0, 0.4, 0.7, 1.0)]
        assert scores == sorted(scores, reverse=True) and scores[-1] < scores[0]


def test_simulated_rater_taste_depends_on_modality_and_is_not_uniform() -> None:
    # The MR rater minds motion far more than noise; a uniform burden would rank them alike.
    assert rater_score(sev(noise=0.6), "MR") > rater_score(sev(motion=0.3), "MR")
    # The same noise costs a CT image less than an NM image.
    assert rater_score(sev(noise=0.6), "CT") > rater_score(sev(noise=0.6), "NM")


def test_simulated_rater_noise_is_seeded() -> None:
    a = rater_score(sev(blur=0.5), "XR", np.random.default_rng(1))
    b = rater_score(sev(blur=0.5), "XR", np.random.default_rng(1))
    assert a == b != rater_score(sev(blur=0.5), "XR")


def test_labels_csv_paths_are_relative_to_the_file_and_bad_rows_are_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "labels.csv").write_text("path,score\nimg/a.png,3.5\n")
    rows = read_labels(tmp_path / "labels.csv")
    assert rows[0].path == str((tmp_path / "img" / "a.png").resolve())
    (tmp_path / "bad.csv").write_text("file,score\na.png,1\n")
    with pytest.raises(ValueError, match="'path' and 'score'"):
        read_labels(tmp_path / "bad.csv")
    (tmp_path / "nan.csv").write_text("path,score\na.png,good\n")
    with pytest.raises(ValueError, match="not a number"):
        read_labels(tmp_path / "nan.csv")


def test_label_map_puts_the_best_label_at_100() -> None:
    labels = np.array([1.0, 3.0, 5.0])
    assert label_map(labels, lower_is_better=False) == (1.0, 5.0)
    assert label_map(labels, lower_is_better=True) == (5.0, 1.0)
    with pytest.raises(ValueError, match="equal"):
        label_map(np.array([2.0, 2.0]), False)


def test_mixture_fit_finds_the_family_the_labels_depend_on() -> None:
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, (80, len(PHYSICAL_FAMILIES)))
    motion = PHYSICAL_FAMILIES.index("motion")
    target = 1.0 - 0.8 * s[:, motion]
    mix = fit_mixture(s, target)
    assert int(mix.argmax()) == motion and float(mix[motion]) > 0.9
    assert float(mix.sum()) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny base model and 12 SIMULATED-rater labelled real crops written as files."""
    root = tmp_path_factory.mktemp("ft")
    torch.manual_seed(0)
    base = save_weights(MedIQANet(ModelConfig.tiny()), root / "base", card={"version": "t"})
    pool = [Item(*real_image(m), m, a, f"t:{m}")
            for m, a in (("MR", "upper_limb"), ("FUNDUS", "eye"), ("XR", "chest"))]
    cfg = ModelConfig.tiny()
    rows = make_rated_set(pool, 12, root / "data", cfg, seed=0)
    return base, write_labels(rows, root / "data" / "labels.csv")


def test_rated_files_open_through_the_product_readers(labelled: tuple[Path, Path]) -> None:
    _, labels = labelled
    items = prepare_labelled(labels, ModelConfig.tiny())
    assert len(items) == 12
    with open(labels) as fh:
        modalities = {row["modality"] for row in csv.DictReader(fh)}
    assert {it.modality for it in items} == modalities  # the labels' column was applied
    assert all(it.request.task_id == ModelConfig.tiny().tasks.index("expert") for it in items)


def test_finetune_writes_a_verified_folder_with_cv_and_moves_only_prompts_and_heads(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    base, labels = labelled
    out = finetune(labels, base, tmp_path / "tuned", folds=2, epochs=2, n_boot=20, echo=None)
    tuned, card = load_weights(out)
    original, base_card = load_weights(base)
    assert card["base_weights"]["sha256"] == base_card["sha256"]
    assert card["cross_validation"]["all"]["n"] == 12
    assert card["site_reader"] is None  # 12 labels over 3 modalities: too few for a reader
    assert not (out / PHYSICS_HEAD_FILE).exists()
    assert card["labels"]["n_used"] == 12 and len(card["labels"]["sha256"]) == 64
    before, after = original.state_dict(), tuned.state_dict()
    for name in before:
        if name.startswith(("blocks.", "context_blocks.", "patch_embed.", "position.",
                            "spacing.")):
            assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["quality_head.weight"], after["quality_head.weight"])


def test_unfreeze_last_trains_the_last_block_and_nothing_before_it(
    labelled: tuple[Path, Path],
) -> None:
    base, labels = labelled
    model, _ = load_weights(base)
    items = prepare_labelled(labels, model.config)
    target = np.linspace(0, 1, len(items))
    state = model.state_dict()
    tuned = train_scorer(state, model.config, items, target, epochs=1, unfreeze_last=1)
    after = tuned.state_dict()
    last = f"blocks.{len(model.blocks) - 1}.fc1.weight"
    assert not torch.equal(state[last], after[last])
    assert torch.equal(state["context_blocks.0.fc1.weight"], after["context_blocks.0.fc1.weight"])


def test_rater_table_and_card_judge_fine_tuning_by_the_paired_gain() -> None:
    from mediqa_train.card import _rater_verdict
    from mediqa_train.rater import results_table

    def est(v: float, lo: float, hi: float) -> dict[str, float]:
        return {"value": v, "low": lo, "high": hi}

    block = {"all": {"srcc": est(0.35, 0.22, 0.47), "plcc": est(0.4, 0.3, 0.5)}}
    results = {"physics_target_vs_rater": block, "before": block, "after": {
        "50": {"test": {"all": {"srcc": est(0.38, 0.25, 0.50), "plcc": est(0.4, 0.3, 0.5)}},
               "srcc_gain": est(0.03, -0.02, 0.08)},
        "200": {"test": {"all": {"srcc": est(0.42, 0.29, 0.53), "plcc": est(0.4, 0.3, 0.5)}},
                "srcc_gain": est(0.07, 0.02, 0.12)}}}
    table = results_table(results)
    assert "| fine-tuned on 200 labels | 0.420 [0.290, 0.530] | 0.400 [0.300, 0.500] | " \
           "+0.070 [+0.020, +0.120] |" in table
    verdict = _rater_verdict(results)
    assert "50 labels 0.380 (gain +0.030, paired 95% interval [-0.020, +0.080]: no reliable " \
           "change)" in verdict
    assert "200 labels 0.420 (gain +0.070, paired 95% interval [+0.020, +0.120]: a reliable " \
           "gain)" in verdict


def test_an_ensemble_base_is_fine_tuned_member_by_member(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    from mediqa_cli.model.ensemble import MedIQAEnsemble

    _, labels = labelled
    torch.manual_seed(1)
    members = [MedIQANet(ModelConfig.tiny()).eval() for _ in range(2)]
    base = save_weights(MedIQAEnsemble.of(members), tmp_path / "ens", card={"version": "e"})
    out = finetune(labels, base, tmp_path / "tuned", folds=0, epochs=1, echo=None)
    tuned, card = load_weights(out)
    assert isinstance(tuned, MedIQAEnsemble) and card["members"] == 2
    assert card["recipe"]["ensemble"].startswith("2 members")
    for before, after in zip(members, tuned.members):
        b, a = before.state_dict(), after.state_dict()
        assert torch.equal(b["blocks.0.attn.qkv.weight"], a["blocks.0.attn.qkv.weight"])
        assert not torch.equal(b["quality_head.weight"], a["quality_head.weight"])
    # Each member was tuned from its own base, so the tuned members still differ.
    assert not torch.equal(tuned.members[0].state_dict()["quality_head.weight"],
                           tuned.members[1].state_dict()["quality_head.weight"])


def test_finetune_writes_a_site_reader_that_scoring_applies(
    labelled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Modalities with enough labels get a reader fitted on the out-of-fold scores; the card
    gives its cross-validation; `mediqa score` on the tuned folder reads each scan with it."""
    import dataclasses
    import functools
    import math

    from mediqa_train import finetune as finetune_module
    from mediqa_train import label_reader

    from mediqa_cli.engine import EngineOptions, run
    from mediqa_cli.io import Scan, discover
    from mediqa_cli.physics_head import PhysicsHead
    from mediqa_cli.scoring import load_scorer

    _, labels = labelled
    config = dataclasses.replace(ModelConfig.tiny(), physics_tokens=True)  # the reader's input
    torch.manual_seed(0)
    base = save_weights(MedIQANet(config).eval(), tmp_path / "base", card={"version": "p"})
    monkeypatch.setattr(label_reader, "MIN_LABELS", 4)
    monkeypatch.setattr(finetune_module, "train_scorer",  # the reader is tested, not the heads
                        functools.partial(finetune_module.train_scorer, min_steps=4))
    out = finetune(labels, base, tmp_path / "tuned", folds=2, epochs=1, n_boot=20, echo=None)
    _, card = load_weights(out)
    head = PhysicsHead.load(out)
    items = prepare_labelled(labels, config)
    counts = {m: sum(it.modality == m for it in items) for m in {it.modality for it in items}}
    assert head is not None and set(head.readers) == {m for m, n in counts.items() if n >= 4}
    assert card["site_reader"]["cross_validation"]["all"]["n"] == 12
    with_reader, network = load_scorer(out, "cpu", precision="fp32"), load_scorer(
        out, "cpu", precision="fp32", physics_head=False)
    assert "+ph-" in with_reader.version and "+ph-" not in network.version
    item = next(it for it in items if it.modality in head.readers)
    reader = head.readers[item.modality]

    def score(scorer) -> float:
        scan = next(s for s in discover([item.path]) if isinstance(s, Scan))
        options = EngineOptions(workers=0, modality=item.modality)
        return float(next(iter(run([scan], options, scorer))).get("score"))

    p = score(network) / 100.0
    logit = reader.logit(np.array([math.log(p / (1 - p))]), item.tokens[0].physics[None])[0]
    expected = 100.0 / (1.0 + math.exp(-logit))
    assert abs(expected - 100.0 * p) > 0.5  # the reader does move this scan
    assert score(with_reader) == pytest.approx(expected, abs=0.02)


def test_a_base_with_specialists_is_tuned_without_them(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    """Specialists score on the physics scale: the tuned folder scores every modality with the
    tuned network, on the site's scale."""
    import shutil

    from mediqa_cli.model.weights import SPECIALISTS_DIR
    from mediqa_cli.scoring import load_scorer

    source, labels = labelled
    base = tmp_path / "base"
    shutil.copytree(source, base)
    shutil.copytree(source, base / SPECIALISTS_DIR / "XR")
    assert load_scorer(base, "cpu", precision="fp32").specialists.keys() == {"XR"}
    out = finetune(labels, base, tmp_path / "tuned", folds=0, epochs=1, echo=None)
    assert not (out / SPECIALISTS_DIR).exists()
    assert load_scorer(out, "cpu", precision="fp32").specialists == {}
