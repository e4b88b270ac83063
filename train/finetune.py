"""Fine-tuning the quality score on expert labels: `mediqa-train finetune --labels labels.csv`.

labels.csv holds `path,score` (any numeric range; `--lower-is-better` when a high number means a
worse image) and optionally `modality` and `anatomy` (taxonomy names; they override the file's
own hints, as `mediqa score --modality` would). Paths are relative to the CSV's folder.

Why it is cheap and safe with a few hundred labels (DESIGN.md, "Alignment"):
- every file goes through the scorer's own path (`engine.prepare_scan` with the scoring
  `SlicePreparer`: salient slices, normalisation, patch selection), prompted with the "expert"
  task, and a scan's score is the saliency-weighted mean of its slices, as in the report;
- the quality query starts as a mixture of the pre-trained physical-family queries whose weights
  come from a non-negative least-squares fit of the labels on the pre-trained severities
  (`MedIQANet.init_expert_query_from_physical`): the expert score starts as "the physical
  problems this rater cares about";
- only prompts, queries and heads move (`freeze_encoder`); `--unfreeze-last N` also trains the
  last N transformer blocks (at a tenth of the learning rate);
- labels are mapped linearly onto 0..100 (lowest label -> 0, highest -> 100; the model card
  records the map so a score can be read back on the rater's scale);
- loss: smooth L1 on that scale plus (1 - Pearson r) per batch, so the ranking is learned even
  where the absolute scale is noisy;
- k-fold cross-validation (out-of-fold SRCC/PLCC/KRCC/RMSE with bootstrap intervals) says how
  well the labels are learned before the final model is trained on all of them and written as a
  new weights folder with its own model card;
- a site reader (`mediqa_train.label_reader`), fitted on the physics tokens and the network's
  out-of-fold scores, is written beside the weights (`physics_head.json`) for each modality with
  enough labels: where the tuned network separates nothing, the classical measures in the
  tokens still can. The card gives its cross-validation on the same folds.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mediqa_cli.labels import read_labels
from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.ensemble import assemble, members_of
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.packing import pack, plan_batches
from mediqa_cli.model.prompts import PromptRequest
from mediqa_cli.physics_head import PhysicsHead
from mediqa_cli.preprocess import SliceTokens

MAX_SLICES = 4  # salient slices per labelled scan (a 2D image has one)


@dataclass
class LabelledScan:
    """One labelled file, prepared once: its tokens never change while prompts and heads train."""

    path: str
    label: float
    modality: str
    tokens: list[SliceTokens]
    request: PromptRequest
    weights: np.ndarray  # (slices,) saliency weights summing to 1


def prepare_labelled(labels: str | os.PathLike[str], config: ModelConfig,
                     max_slices: int = MAX_SLICES,
                     echo: Callable[[str], None] | None = None) -> list[LabelledScan]:
    """Read every labelled file through the scorer's path; unreadable files are skipped (said)."""
    from mediqa_cli.engine import EngineOptions, prepare_scan
    from mediqa_cli.io import discover
    from mediqa_cli.io.scan import Scan
    from mediqa_cli.scoring import SlicePreparer

    preparer = SlicePreparer(config)
    items: list[LabelledScan] = []
    for label in read_labels(labels):
        scans = [s for s in discover([label.path]) if isinstance(s, Scan)]
        if not scans:
            if echo:
                echo(f"skipped {label.path}: no readable scan")
            continue
        options = EngineOptions(max_slices=max_slices, modality=label.modality,
                                anatomy=label.anatomy)
        prepared = prepare_scan(scans[0], options, preparer)
        if prepared.failed or prepared.model_inputs is None:
            if echo:
                echo(f"skipped {label.path}: {prepared.row.get('error')}")
            continue
        tokens, request = prepared.model_inputs
        w = np.asarray(prepared.slice_weights, dtype=np.float64)
        w = w / w.sum() if w.size == len(tokens) and w.sum() > 0 else np.full(len(tokens),
                                                                              1 / len(tokens))
        items.append(LabelledScan(label.path, label.score,
                                  scans[0].modality or "unknown", tokens, request, w))
    return items


def _batches(items: Sequence[LabelledScan], order: Sequence[int], max_tokens: int,
             config: ModelConfig) -> list[list[int]]:
    counts = [sum(t.n_tokens for t in items[i].tokens) for i in order]
    return [[order[j] for j in group] for group in plan_batches(counts, max_tokens, config)]


def scan_outputs(model: torch.nn.Module, items: Sequence[LabelledScan], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (N,), severities (N, F)) per scan: saliency-weighted means over its slices."""
    tokens = [t for it in items for t in it.tokens]
    prompts = [it.request for it in items for _ in it.tokens]
    packed = pack(tokens, prompts, model.config).to(device)
    sev, quality = model(*packed.args())[:2]
    owner = torch.tensor([i for i, it in enumerate(items) for _ in it.tokens], device=device)
    w = torch.tensor(np.concatenate([it.weights for it in items]), dtype=quality.dtype,
                     device=device)
    scores = torch.zeros(len(items), dtype=quality.dtype, device=device).index_add(
        0, owner, w * quality)
    sevs = torch.zeros(len(items), sev.shape[1], dtype=sev.dtype, device=device).index_add(
        0, owner, w[:, None] * sev)
    return scores, sevs


@torch.no_grad()
def score_prepared(model: torch.nn.Module, items: Sequence[LabelledScan], max_tokens: int = 8192,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """Scan scores (0..100) of prepared items, in order."""
    dev = torch.device(device)
    model.eval().to(dev)
    out = np.zeros(len(items))
    for group in _batches(items, list(range(len(items))), max_tokens, model.config):
        out[group] = scan_outputs(model, [items[i] for i in group], dev)[0].cpu().numpy()
    return out


@torch.no_grad()
def scan_severities(model: torch.nn.Module, items: Sequence[LabelledScan], dev: torch.device,
                    max_tokens: int = 8192) -> np.ndarray:
    """(scans, families) pre-trained severities, scan-aggregated as scoring aggregates them:
    what the expert mixture is fitted on."""
    out = np.zeros((len(items), len(model.config.families)))
    for group in _batches(items, list(range(len(items))), max_tokens, model.config):
        out[group] = scan_outputs(model, [items[i] for i in group], dev)[1].cpu().numpy()
    return out


def fit_mixture(severities: np.ndarray, target01: np.ndarray) -> torch.Tensor:
    """Non-negative weights w of the families with 1 - target ~ c + severities @ w.

    Solved by projected gradient on the normal equations (tiny problem; no scipy needed);
    all-zero weights (labels unrelated to any family) fall back to uniform.
    """
    s = severities - severities.mean(0)
    y = (1.0 - target01) - (1.0 - target01).mean()
    w = np.zeros(s.shape[1])
    lip = float(np.linalg.norm(s, 2) ** 2) or 1.0
    for _ in range(2000):
        w = np.clip(w - (s.T @ (s @ w - y)) / lip, 0.0, None)
    if w.sum() <= 1e-8:
        w = np.ones_like(w)
    return torch.tensor(w / w.sum(), dtype=torch.float32)


def _pearson_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, t = pred - pred.mean(), target - target.mean()
    return 1.0 - (p * t).sum() / (p.norm() * t.norm() + 1e-8)


def train_scorer(base: dict[str, torch.Tensor], config: ModelConfig,
                 items: Sequence[LabelledScan], target01: np.ndarray, epochs: int = 10,
                 lr: float = 3e-3, unfreeze_last: int = 0, max_tokens: int = 1024,
                 seed: int = 0, device: str | torch.device = "cpu",
                 min_steps: int = 120) -> MedIQANet:
    """A fresh copy of the base model fine-tuned on items (targets in 0..1, higher better).

    Runs `epochs` passes, or more until `min_steps` optimiser steps: with 50 labels an epoch is
    a handful of batches, too few updates for the heads to settle."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = MedIQANet(config)
    model.load_state_dict(base)
    model.to(dev)
    mix = fit_mixture(scan_severities(model.eval(), items, dev), target01)
    model.init_expert_query_from_physical(mix)
    model.freeze_encoder()
    blocks = list(model.blocks)[len(model.blocks) - unfreeze_last:] if unfreeze_last else []
    block_params = [p for b in blocks for p in b.parameters()]
    for p in block_params:
        p.requires_grad_(True)
    groups = [{"params": model.fine_tune_parameters(), "lr": lr}]
    if block_params:
        groups.append({"params": block_params, "lr": lr * 0.1})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    y = torch.tensor(target01, dtype=torch.float32, device=dev)
    plans: list[list[list[int]]] = []
    while len(plans) < epochs or sum(len(p) for p in plans) < min_steps:
        plans.append(_batches(items, list(rng.permutation(len(items))), max_tokens, config))
    total = sum(len(p) for p in plans)
    step = 0
    model.train()
    for plan in plans:
        for group in plan:
            for g, base_lr in zip(opt.param_groups, [lr, lr * 0.1]):
                g["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
            scores, _ = scan_outputs(model, [items[i] for i in group], dev)
            target = y[group]
            loss = F.smooth_l1_loss(scores / 100.0, target, beta=0.05)
            if len(group) >= 4:
                loss = loss + 0.5 * _pearson_loss(scores, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()


def member_states(model: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    """A copy of each network's weights: one for a single network, one per ensemble member."""
    return [{k: v.clone() for k, v in member.state_dict().items()}
            for member in members_of(model)]


def tune_members(base_states: Sequence[dict[str, torch.Tensor]], config: ModelConfig,
                 items: Sequence[LabelledScan], target01: np.ndarray,
                 **kw: Any) -> torch.nn.Module:
    """`train_scorer` on each base network alone, same labels; one network or their ensemble."""
    return assemble([train_scorer(state, config, items, target01, **kw)
                     for state in base_states])


def label_map(labels: np.ndarray, lower_is_better: bool) -> tuple[float, float]:
    """(label at score 0, label at score 100): the linear map from the rater's scale."""
    lo, hi = float(labels.min()), float(labels.max())
    if hi - lo <= 0:
        raise ValueError("all labels are equal: nothing to learn")
    return (hi, lo) if lower_is_better else (lo, hi)


def folds_of(n: int, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint index sets covering 0..n-1, shuffled with the seed."""
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(k)]


def finetune(labels: str | os.PathLike[str], base: str | os.PathLike[str],
             out: str | os.PathLike[str], folds: int = 5, epochs: int = 10, lr: float = 3e-3,
             unfreeze_last: int = 0, lower_is_better: bool = False, seed: int = 0,
             device: str = "cpu", n_boot: int = 1000, command: str | None = None,
             echo: Callable[[str], None] | None = print) -> Path:
    """Cross-validate, then fine-tune on all labels and write a weights folder; returns it."""
    from mediqa_cli.evaluation import evaluate
    from mediqa_cli.model.weights import load_weights, save_weights, sha256_file

    started = time.perf_counter()
    model, base_card = load_weights(base)
    config = model.config
    # An ensemble base is fine-tuned member by member on the same labels and folds; the
    # ensemble of the tuned members is what is cross-validated and written.
    base_states = member_states(model)
    items = prepare_labelled(labels, config, echo=echo)
    if len(items) < 4:
        raise ValueError(f"{labels}: only {len(items)} usable labelled files; need at least 4")
    raw = np.array([it.label for it in items])
    at0, at100 = label_map(raw, lower_is_better)
    target = (raw - at0) / (at100 - at0)
    kw = dict(epochs=epochs, lr=lr, unfreeze_last=unfreeze_last, seed=seed, device=device)

    cv: dict[str, Any] | None = None
    if folds >= 2 and len(items) >= 2 * folds:
        oof = out_of_fold_scores(base_states, config, items, target, folds, seed, echo,
                                 epochs=epochs, lr=lr, unfreeze_last=unfreeze_last,
                                 device=device)
        # Out-of-fold scores on the 0..100 scale vs labels on the same scale.
        cv = {"folds": folds, **evaluate(oof, 100.0 * target, [it.modality for it in items],
                                          n_boot=n_boot, seed=seed)}
        if echo:
            echo(f"{folds}-fold CV: SRCC {cv['all']['srcc']['value']:.3f} "
                 f"PLCC {cv['all']['plcc']['value']:.3f} on {len(items)} labels")
    head, reader_cv = None, None
    if cv is not None:
        head, reader_cv = _site_reader(items, oof, target, folds, seed, n_boot, str(labels))
        if echo and reader_cv is not None:
            echo(f"with the site reader: SRCC {reader_cv['all']['srcc']['value']:.3f} "
                 f"PLCC {reader_cv['all']['plcc']['value']:.3f} ({head.fitted_on})")
    final = tune_members(base_states, config, items, target, **kw)
    card = {
        "task": "expert-label fine-tuning of the quality score (prompts, queries and heads"
                + (f", last {unfreeze_last} blocks" if unfreeze_last else "") + ")",
        "base_weights": {"path": str(base), "sha256": base_card.get("sha256"),
                         "version": base_card.get("version")},
        "labels": {"file": str(labels), "sha256": _sha256(labels), "n_used": len(items),
                   "lower_is_better": lower_is_better,
                   "score_map": f"score 0 = label {at0:g}, score 100 = label {at100:g} "
                                "(linear)"},
        "recipe": {"epochs": epochs, "lr": lr, "unfreeze_last": unfreeze_last, "seed": seed,
                   "loss": "smooth L1 (0..1 scale) + 0.5 * (1 - Pearson r)",
                   "mixture_init": "NNLS of labels on pre-trained severities"},
        "cross_validation": cv,
        "site_reader": None if head is None else {
            "file": "physics_head.json", "fitted_on": head.fitted_on,
            "cross_validation": reader_cv,
            "note": "reader refitted per fold on the network's out-of-fold scores of the other "
                    "folds; those scores come from networks tuned on the held fold too"},
        "training_command": command or f"mediqa-train finetune --labels {labels} --base {base}"
                                       f" --out {out}",
        "wall_s": round(time.perf_counter() - started, 1),
        "score_meaning": "fine-tuned expert score (see labels.score_map), task prompt 'expert'",
    }
    if len(base_states) > 1:
        card["recipe"]["ensemble"] = (f"{len(base_states)} members, each fine-tuned alone on the "
                                      "same labels and folds")
    path = save_weights(final, out, name="mediqa-finetuned",
                        version=f"{base_card.get('version', '0')}+ft", card=card)
    if head is not None:
        head.save(path)
    if echo:
        digest = sha256_file(Path(path) / "model.safetensors")
        echo(f"fine-tuned weights -> {path} (sha256 {digest})")
    return Path(path)


def out_of_fold_scores(base_states: Sequence[dict[str, torch.Tensor]], config: ModelConfig,
                       items: Sequence[LabelledScan], target01: np.ndarray, folds: int,
                       seed: int, echo: Callable[[str], None] | None = None,
                       **kw: Any) -> np.ndarray:
    """Each scan's score (0..100) from the base tuned on the other folds."""
    oof = np.zeros(len(items))
    for k, held in enumerate(folds_of(len(items), folds, seed)):
        fit = np.setdiff1d(np.arange(len(items)), held)
        tuned = tune_members(base_states, config, [items[i] for i in fit], target01[fit],
                             seed=seed, **kw)
        oof[held] = score_prepared(tuned, [items[i] for i in held],
                                   device=kw.get("device", "cpu"))
        if echo:
            echo(f"fold {k + 1}/{folds}: trained on {len(fit)}, scored {len(held)}")
    return oof


def scan_token_matrix(items: Sequence[LabelledScan]) -> np.ndarray:
    """(scans, N_PHYSICS): each scan's mean physics tokens over its prepared slices."""
    from mediqa_train.label_reader import scan_tokens

    return np.stack([scan_tokens([t.physics for t in it.tokens]) for it in items])


def with_site_reader(head: PhysicsHead, items: Sequence[LabelledScan], scores: np.ndarray,
                     tokens: np.ndarray) -> np.ndarray:
    """Scan scores (0..100) read with a site head, per modality; unchanged without a reader."""
    out = np.asarray(scores, dtype=np.float64).copy()
    modalities = np.array([it.modality for it in items])
    for modality in set(modalities.tolist()):
        rows = np.flatnonzero(modalities == modality)
        out[rows] = head.apply(out[rows], list(tokens[rows]), modality)
    return out


def _site_reader(items: Sequence[LabelledScan], oof: np.ndarray, target01: np.ndarray,
                 folds: int, seed: int, n_boot: int, source: str
                 ) -> tuple[PhysicsHead | None, dict[str, Any] | None]:
    """The site head fitted on all out-of-fold scores, and its cross-validation on the same
    folds (None where no modality has enough labels)."""
    from mediqa_train.label_reader import fit_site_head

    from mediqa_cli.evaluation import evaluate

    tokens = scan_token_matrix(items)
    modalities = [it.modality for it in items]
    head = fit_site_head(modalities, tokens, oof, target01, seed, Path(source).name)
    if head is None:
        return None, None
    read = oof.copy()
    for held in folds_of(len(items), folds, seed):
        fit = np.setdiff1d(np.arange(len(items)), held)
        part = fit_site_head([modalities[i] for i in fit], tokens[fit], oof[fit], target01[fit],
                             seed)
        if part is not None:
            read[held] = with_site_reader(part, [items[i] for i in held], oof[held], tokens[held])
    return head, {"folds": folds, **evaluate(read, 100.0 * target01, modalities, n_boot=n_boot,
                                              seed=seed)}


def _sha256(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
