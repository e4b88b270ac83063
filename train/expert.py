"""Agreement with expert labels on the manifest's labelled images (the hip ultrasound set).

Why: within-ladder ranks say the score sees an artefact grow; they do not say a reader's
"substandard" is what the score calls worse. Two sonographers labelled the 50 infant hip
images of `hidden-ops/NHBS-Net_SPJ_dataset` standard (1) or substandard (0); this module scores
them through the product (whole images, as `mediqa score` does), next to the rivals and the
IQMs, and reports the AUC of each against the labels with a bootstrap interval over images
(one image per case: the cases are the groups).

The few-label curve asks what a site gets from fine-tuning on n of its own labels
(`mediqa_train.finetune`): for n in (10, 20, 40), repeated stratified draws of n training
images, fine-tuned from the shipped weights, AUC on the images left out, compared with the
untuned score and the best rival on the same held-out images.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from mediqa_train.manifest import Entry, fetch_entry

if TYPE_CHECKING:
    import torch
    from mediqa_train.finetune import LabelledScan

    from mediqa_cli.model.config import ModelConfig


@dataclass
class LabelledImage:
    entry: Entry
    path: Path
    label: int


def read_binary_labels(path: str | Path) -> dict[str, int]:
    """sha256 -> 0/1 from a CSV with columns sha256,label."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    out: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        label = (row.get("label") or "").strip()
        if label not in ("0", "1"):
            raise ValueError(f"{path}, line {line}: label must be 0 or 1, got {label!r}")
        out[(row.get("sha256") or "").strip()] = int(label)
    return out


def labelled_images(entries: Sequence[Entry], labels: dict[str, int], cache: Path,
                    mirror: Path | None) -> list[LabelledImage]:
    by_sha = {e.sha256: e for e in entries}
    missing = sorted(set(labels) - set(by_sha))
    if missing:
        raise ValueError(f"{len(missing)} labelled sha256 not in the manifest "
                         f"(first {missing[0][:12]})")
    return [LabelledImage(by_sha[s], fetch_entry(by_sha[s], cache, mirror), y)
            for s, y in sorted(labels.items())]


def auc(values: np.ndarray, labels: np.ndarray) -> float:
    """P(value of a positive > value of a negative), ties half; NaN values are dropped."""
    keep = np.isfinite(values)
    v, y = values[keep], labels[keep]
    pos, neg = v[y == 1], v[y == 0]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def bootstrap_auc(values: np.ndarray, labels: np.ndarray, n: int = 1000,
                  seed: int = 0) -> tuple[float, float]:
    """95% interval of the AUC over bootstrap draws of images."""
    return _bootstrap_interval(lambda idx: auc(values[idx], labels[idx]), len(values), n, seed)


def _bootstrap_interval(statistic: Callable[[np.ndarray], float], n_items: int, n: int,
                        seed: int) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of `statistic` over n draws of item indices with
    replacement (draws where it is undefined, e.g. one class only, are left out)."""
    rng = np.random.default_rng(seed)
    draws = [statistic(rng.integers(0, n_items, n_items)) for _ in range(n)]
    finite = [d for d in draws if math.isfinite(d)]
    return float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))


def score_images(images: Sequence[LabelledImage], weights: Path,
                 log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """The report's score, phys_* and iqm_* columns and the rivals, per image (higher = better
    for the score, rivals and IQMs as oriented in `evaluate`)."""
    from mediqa_train.evaluate import IQM_HIGHER_IS_BETTER
    from mediqa_train.rivals import score_all

    from mediqa_cli.engine import EngineOptions, run
    from mediqa_cli.io import Scan, discover
    from mediqa_cli.scoring import load_scorer

    # fp32, not the CPU's `auto`: the stored agreement JSONs (benchmarks/results/hip_*.json)
    # were scored in fp32, and a comparison with them must use the same arithmetic anywhere.
    scorer = load_scorer(weights, "cpu", precision="fp32")
    columns: dict[str, list[float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scans = [next(i for i in discover([str(im.path)]) if isinstance(i, Scan))
                 for im in images]
        for scan, image in zip(scans, images):
            scan.modality, scan.anatomy = image.entry.modality, image.entry.anatomy
        rows = list(run(scans, EngineOptions(workers=0), scorer))
    for scan, row in zip(scans, rows):
        score = row.get("score")
        values = {"model": math.nan if score in (None, "") else float(score)}
        for name, higher in IQM_HIGHER_IS_BETTER.items():
            raw = row.get(name)
            value = math.nan if raw in (None, "") else float(raw)
            values[name] = value if higher else -value
        values.update(score_all(np.asarray(scan.read_slice(0), dtype=np.float32),
                                scan.modality or "US"))
        for key, value in values.items():
            columns.setdefault(key, []).append(value)
    log(f"scored {len(rows)} labelled images with {scorer.version}")
    return {k: np.asarray(v, dtype=float) for k, v in columns.items()}


def stratified_draw(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n training indices with both classes in proportion (at least one of each)."""
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = int(np.clip(round(n * len(positives) / len(labels)), 1, n - 1))
    return np.concatenate([rng.choice(positives, n_pos, replace=False),
                           rng.choice(negatives, n - n_pos, replace=False)])


def stratified_folds(labels: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """k disjoint index sets covering every image once, each with both classes in proportion
    (each class shuffled, then dealt round-robin)."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    start = 0
    for cls in (1, 0):
        members = rng.permutation(np.flatnonzero(labels == cls))
        for i, index in enumerate(members):
            folds[(start + i) % k].append(int(index))
        start += len(members)
    return [np.sort(np.array(f, dtype=int)) for f in folds]


def paired_auc_difference(a: np.ndarray, b: np.ndarray, labels: np.ndarray, n: int = 1000,
                          seed: int = 0) -> tuple[float, float]:
    """95% interval of AUC(a) - AUC(b) over bootstrap draws of images, both on the same draw."""
    return _bootstrap_interval(
        lambda idx: auc(a[idx], labels[idx]) - auc(b[idx], labels[idx]), len(labels), n, seed)


def crossfit_scores(images: Sequence[LabelledImage], weights: Path, folds: int = 5,
                    seed: int = 0, workdir: Path | None = None,
                    log: Callable[[str], None] = print, unfreeze_last: int = 0
                    ) -> dict[str, np.ndarray]:
    """Each image's score from a model fine-tuned on the other folds (one image per case, so
    the folds split cases): out-of-fold scores for every image, comparable with a rival on all
    of them, where a few-label draw leaves only a handful of test images. `unfreeze_last` is
    `mediqa-train finetune --unfreeze-last`: the last N transformer blocks train too.

    Two columns: "fine-tuned", the network alone, and "fine-tuned + site reader", what
    `mediqa-train finetune` writes (`mediqa_train.label_reader`). The reader of each outer fold
    is fitted as finetune fits it, on out-of-fold scores of an inner cross-validation of that
    fold's training images only, so no score of a held-out image ever sees its label."""
    from mediqa_train.finetune import (
        out_of_fold_scores,
        scan_token_matrix,
        score_prepared,
        tune_members,
        with_site_reader,
    )
    from mediqa_train.label_reader import fit_site_head

    items, base_states, config = _prepared(images, weights, workdir)
    y = np.array([im.label for im in images])
    tokens = scan_token_matrix(items)
    network = np.full(len(images), np.nan)
    read = np.full(len(images), np.nan)
    for f, test in enumerate(stratified_folds(y, folds, seed)):
        train = np.setdiff1d(np.arange(len(y)), test)
        train_items, target = [items[i] for i in train], y[train].astype(float)
        inner = out_of_fold_scores(base_states, config, train_items, target, folds, seed + f,
                                   unfreeze_last=unfreeze_last)
        head = fit_site_head([it.modality for it in train_items], tokens[train], inner, target,
                             seed + f)
        tuned = tune_members(base_states, config, train_items, target, seed=seed + f,
                             unfreeze_last=unfreeze_last)
        test_items = [items[i] for i in test]
        network[test] = score_prepared(tuned, test_items)
        read[test] = (network[test] if head is None
                      else with_site_reader(head, test_items, network[test], tokens[test]))
        log(f"fold {f + 1}/{folds}: tuned on {len(train)}, scored {len(test)}"
            + ("" if head is None else f"; {head.fitted_on}"))
    return {"fine-tuned": network, "fine-tuned + site reader": read}


def _prepared(images: Sequence[LabelledImage], weights: Path, workdir: Path | None
              ) -> tuple[list[LabelledScan], list[dict[str, torch.Tensor]], ModelConfig]:
    """The labelled images prepared for fine-tuning, the base networks' states and config."""
    import tempfile

    from mediqa_train.finetune import member_states, prepare_labelled

    from mediqa_cli.model.weights import load_weights

    model, _ = load_weights(weights)
    config = model.config
    base_states = member_states(model)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        labels_csv = Path(tmp) / "labels.csv"
        with open(labels_csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "score", "modality", "anatomy"])
            for im in images:
                writer.writerow([str(im.path.resolve()), im.label, im.entry.modality,
                                 im.entry.anatomy])
        items = prepare_labelled(labels_csv, config)
    if len(items) != len(images):
        raise ValueError(f"{len(images) - len(items)} labelled images could not be prepared")
    return items, base_states, config


def few_label_curve(images: Sequence[LabelledImage], weights: Path, zero_shot: np.ndarray,
                    rival: np.ndarray, sizes: Sequence[int] = (10, 20, 40), repeats: int = 5,
                    seed: int = 0, workdir: Path | None = None,
                    log: Callable[[str], None] = print) -> list[dict[str, float]]:
    """Fine-tune on n labels (stratified draws), AUC on the images left out, next to the
    untuned score and a rival on the same held-out images; one row per draw."""
    from mediqa_train.finetune import score_prepared, tune_members

    items, base_states, config = _prepared(images, weights, workdir)
    y = np.array([im.label for im in images])
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for r in range(repeats):
            train = stratified_draw(y, n, rng)
            test = np.setdiff1d(np.arange(len(y)), train)
            tuned = tune_members(base_states, config, [items[i] for i in train],
                                 y[train].astype(float), seed=seed + r)
            scores = score_prepared(tuned, [items[i] for i in test])
            rows.append({"n": n, "draw": r, "tuned": auc(scores, y[test]),
                         "untuned": auc(zero_shot[test], y[test]),
                         "rival": auc(rival[test], y[test])})
            log(f"n={n} draw {r}: tuned {rows[-1]['tuned']:.3f}, untuned "
                f"{rows[-1]['untuned']:.3f}, rival {rows[-1]['rival']:.3f}")
    return rows
