"""Expert-label agreement: AUC, its bootstrap, stratified draws, the labels file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from mediqa_train.expert import (
    auc,
    bootstrap_auc,
    paired_auc_difference,
    read_binary_labels,
    stratified_draw,
    stratified_folds,
)


def test_auc_counts_pairs_and_ties() -> None:
    y = np.array([1, 1, 0, 0])
    assert auc(np.array([4.0, 3.0, 2.0, 1.0]), y) == 1.0
    assert auc(np.array([1.0, 2.0, 3.0, 4.0]), y) == 0.0
    assert auc(np.array([1.0, 1.0, 1.0, 1.0]), y) == 0.5
    assert auc(np.array([4.0, math.nan, 2.0, 1.0]), y) == 1.0  # NaN dropped, not ranked
    assert math.isnan(auc(np.array([1.0, 2.0]), np.array([1, 1])))


def test_bootstrap_interval_brackets_the_value() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    values = y + rng.normal(0, 1.0, 80)
    low, high = bootstrap_auc(values, y, n=300)
    assert low < auc(values, y) < high
    assert low > 0.6 and high < 0.95


def test_stratified_draw_keeps_both_classes() -> None:
    y = np.array([1] * 25 + [0] * 25)
    rng = np.random.default_rng(1)
    for n in (2, 10, 40):
        draw = stratified_draw(y, n, rng)
        assert len(draw) == len(set(draw.tolist())) == n
        assert 0 < y[draw].sum() < n


def test_stratified_folds_hold_every_image_once_with_both_classes() -> None:
    y = np.array([1] * 25 + [0] * 25)
    folds = stratified_folds(y, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(50))
    for fold in folds:
        assert len(fold) == 10 and y[fold].sum() == 5


def test_paired_auc_difference_sees_a_better_score() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    good, poor = y + rng.normal(0, 0.3, 60), rng.normal(0, 1.0, 60)
    low, high = paired_auc_difference(good, poor, y, n=300)
    assert 0.0 < low < high
    assert paired_auc_difference(good, good, y, n=50) == (0.0, 0.0)


def test_labels_file(tmp_path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("sha256,label\nabc,1\ndef,0\n")
    assert read_binary_labels(path) == {"abc": 1, "def": 0}
    path.write_text("sha256,label\nabc,2\n")
    with pytest.raises(ValueError, match="line 2"):
        read_binary_labels(path)


def test_committed_hip_labels_are_in_the_manifest() -> None:
    from mediqa_train.cli import HIP_LABELS
    from mediqa_train.manifest import read_manifest

    labels = read_binary_labels(HIP_LABELS)
    manifest = {e.sha256: e for e in read_manifest()}
    assert len(labels) == 50 and sum(labels.values()) == 25
    assert all(manifest[s].modality == "US" for s in labels)


def test_crossfit_scores_every_image_once_and_never_fits_on_a_held_out_label(monkeypatch) -> None:
    """Each outer fold tunes, and fits its site reader, on the other folds' images only (the
    reader on an inner cross-validation of them), with `unfreeze_last` passed on; every image
    gets one out-of-fold score per column. Where the tokens carry the labels and the network
    does not, the reader column separates them and the network column does not."""
    from types import SimpleNamespace

    from mediqa_train import expert, finetune

    from mediqa_cli.physics import N_PHYSICS

    labels = np.array([1, 0] * 20)
    rng = np.random.default_rng(0)
    physics = rng.normal(size=(len(labels), N_PHYSICS))
    physics[:, 0] += 5.0 * labels
    items = [SimpleNamespace(index=i, modality="US", tokens=[SimpleNamespace(physics=physics[i])])
             for i in range(len(labels))]
    images = [expert.LabelledImage(f"img{i}", str(i), int(y)) for i, y in enumerate(labels)]
    calls: list[tuple[set[int], int]] = []
    monkeypatch.setattr(expert, "_prepared", lambda imgs, w, d: (items, [], None))

    def tune(states, config, fit_items, target, seed, unfreeze_last):
        calls.append(({it.index for it in fit_items}, unfreeze_last))
        return None

    monkeypatch.setattr(finetune, "tune_members", tune)
    monkeypatch.setattr(finetune, "score_prepared", lambda tuned, scored, **kw: np.array(
        [50.0 + it.index % 3 for it in scored]))
    scores = expert.crossfit_scores(images, Path("w"), folds=4, log=lambda _: None,
                                    unfreeze_last=2)
    assert set(scores) == {"fine-tuned", "fine-tuned + site reader"}
    assert len(calls) == 4 * 5 and all(unfreeze == 2 for _, unfreeze in calls)
    outer = [trained for trained, _ in calls[4::5]]  # each outer fold: 4 inner tunes, then its own
    held = [set(range(len(labels))) - trained for trained in outer]
    assert sorted(i for fold in held for i in fold) == list(range(len(labels)))  # a partition
    for f, test in enumerate(held):
        assert all(not (trained & test) for trained, _ in calls[5 * f:5 * f + 5])
    assert all(np.isfinite(v).all() for v in scores.values())
    assert expert.auc(scores["fine-tuned + site reader"], labels) > 0.9
    assert 0.3 < expert.auc(scores["fine-tuned"], labels) < 0.7


def test_crossfit_agreement_compares_each_tuned_column_with_the_other_and_every_rival(
        monkeypatch) -> None:
    from mediqa_train import cli, expert

    labels = np.array([1, 0] * 10)
    perfect, useless = labels * 10.0, np.zeros(len(labels))
    monkeypatch.setattr(expert, "crossfit_scores", lambda *a, **k: {
        "fine-tuned": useless, "fine-tuned + site reader": perfect})
    result = cli._crossfit_agreement([], Path("w"), {"model": useless, "iqm_noise_sigma": perfect},
                                     labels, folds=5, seed=0)
    assert result["auc"]["fine-tuned + site reader"][0] == 1.0
    assert result["auc"]["fine-tuned"][0] == 0.5
    reader = result["difference"]["fine-tuned + site reader"]
    assert set(reader) == {"fine-tuned", "model", "iqm_noise_sigma"}
    assert reader["fine-tuned"][0] > 0.3 and reader["iqm_noise_sigma"] == [0.0, 0.0]
    assert "fine-tuned + site reader" in result["difference"]["fine-tuned"]
    assert result["scores"]["fine-tuned + site reader"] == list(perfect)
