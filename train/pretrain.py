"""Physics-informed pre-training of MedIQANet on simulated degradations of real slices.

Multi-task loss per packed slice (see `multitask_loss`):
- physical-parameter severities (one sigmoid per family, 0..1): binary cross-entropy against the
  simulator chain's severities (soft targets; clean crops are all zeros);
- quality (0..100): smooth L1 on quality / 100 against the full-reference physics target
  (`mediqa_train.quality`, SSIM to the clean crop, times the shading term when
  `data.shading_weight` > 0; 100 for clean crops);
- context: cross-entropy of the context head's modality and anatomy logits against the true
  labels, for every slice (the context head runs before the prompt joins, so it must learn to
  name the modality and anatomy from pixels alone; metadata dropout in the batches teaches the
  later blocks to work with its guess);
- ranking (when the batches hold groups, `BatchRecipe.group_size` > 1): logistic pairwise loss
  on the quality of versions of one crop at rising severity. Quality from a single image is a
  second-order statistic a small transformer learns slowly from scratch; with the content held
  fixed inside a group, the gradient points at what the artefact changes. In 4-minute trials
  on this corpus it took the validation SRCC from about 0 to about 0.3 at equal wall time.

AdamW with linear warmup and cosine decay. The schedule's progress is max(step / steps,
elapsed / time budget) when `--max-minutes` is given, so a run on a busy machine still anneals
to the end of its budget instead of stopping mid-schedule. Checkpoints (safetensors weights +
`torch.save` optimizer state + JSON step state) every `ckpt_every` steps and at the end make the
run resumable; the final weights are written with `save_weights` (safetensors + model card).
Metrics go to `metrics.jsonl` and stdout.

With `optim.cycles` = N > 1 the cosine runs N times over the budget (N - 1 restarts at the full
rate) and the weights at each cycle's end are kept in `RUN/snapshots/`. `snapshot_ensemble`
ships those N networks
as one ensemble (`mediqa_cli/model/ensemble.py`): several networks for the price of one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mediqa_train.batches import (
    BatchRecipe,
    BatchStream,
    CleanSlice,
    Example,
    ExampleMaker,
    TrainBatch,
    collate,
)
from mediqa_train.quality import target_description
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from mediqa_cli.model.config import ModelConfig, drop_retired
from mediqa_cli.model.network import MedIQANet, count_parameters
from mediqa_cli.model.weights import save_weights
from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


# Options whose trials lost (benchmarks/RESULTS.md), with the value every shipped run used.
RETIRED_RUN_KEYS: dict[str, Any] = {"ema_decay": 0.0}
RETIRED_LOSS_KEYS: dict[str, Any] = {"rank_by": "target"}


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + warmup + cosine; `steps` is the schedule length (see module docstring)."""

    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    steps: int = 2000
    grad_clip: float = 1.0
    cycles: int = 1  # > 1: this many cosines back to back (warm restarts, snapshots)


@dataclass(frozen=True)
class LossWeights:
    severity: float = 1.0
    quality: float = 2.0
    context: float = 0.3
    rank: float = 0.0  # pairwise ranking of versions of one crop (batches with group_size > 1)
    quality_beta: float = 0.05  # smooth-L1 transition, in quality / 100 units
    rank_margin: float = 2.0  # pairs closer than this in target quality are not ranked
    rank_scale: float = 5.0  # quality points per logit of the ranking loss


@dataclass(frozen=True)
class RunConfig:
    """Everything a pre-training run needs; one JSON file in train/configs/."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: BatchRecipe = field(default_factory=BatchRecipe)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    workers: int = 1
    log_every: int = 10
    ckpt_every: int = 200
    val_every: int = 200
    val_examples: int = 64
    val_ladders_per_modality: int = 0  # > 0: track within-ladder SRCC on val sources
    select_best: bool = False  # ship the weights of the best val_ladder_srcc, not the last step
    snapshot_ensemble: bool = False  # ship the weights at every cycle's end as one ensemble

    def __post_init__(self) -> None:
        if self.optim.cycles < 1:
            raise ValueError(f"optim.cycles must be >= 1, got {self.optim.cycles}")
        if self.snapshot_ensemble and self.optim.cycles < 2:
            raise ValueError("snapshot_ensemble needs optim.cycles >= 2 (one snapshot per cycle)")
        if self.snapshot_ensemble and self.select_best:
            raise ValueError("snapshot_ensemble ships the cycle ends; it excludes select_best")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Strict about unknown keys; options removed after their trials are accepted at the
        value every shipped run used (run configs in older model cards hold them)."""
        data = drop_retired(data, RETIRED_RUN_KEYS, "run config")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run config keys: {', '.join(unknown)}")
        kw: dict[str, Any] = {k: v for k, v in data.items()
                              if k not in ("model", "data", "optim", "loss")}
        if "model" in data:
            kw["model"] = ModelConfig.from_dict(data["model"])
        if "data" in data:
            kw["data"] = BatchRecipe.from_dict(data["data"])
        if "optim" in data:
            kw["optim"] = _strict(OptimConfig, data["optim"])
        if "loss" in data:
            kw["loss"] = _strict(LossWeights, drop_retired(data["loss"], RETIRED_LOSS_KEYS,
                                                           "loss"))
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"] = self.model.to_dict()
        return json.loads(json.dumps(out))  # tuples -> lists

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunConfig:
        """A config by path, or by name from train/configs/ ("shipped", "smoke")."""
        p = Path(path)
        if not p.exists() and (CONFIG_DIR / f"{path}.json").exists():
            p = CONFIG_DIR / f"{path}.json"
        return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))


def _strict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# --------------------------------------------------------------------------- loss, schedule

def multitask_loss(outputs: Sequence[torch.Tensor], batch: TrainBatch, w: LossWeights
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the severity BCE, the quality smooth-L1, the context cross-entropy and
    (when batches hold groups of versions of one crop) the within-group ranking loss."""
    severities, quality, mod_logits, anat_logits = outputs[:4]
    sev = F.binary_cross_entropy(severities.float().clamp(1e-6, 1 - 1e-6), batch.severities)
    qual = F.smooth_l1_loss(quality.float() / 100.0, batch.quality / 100.0, beta=w.quality_beta)
    ctx = context_loss(mod_logits, anat_logits, batch)
    total = w.severity * sev + w.quality * qual + w.context * ctx
    parts = {"severity": sev.item(), "quality": qual.item(), "context": ctx.item()}
    if w.rank > 0 and batch.group is not None:
        rank = ranking_loss(quality.float(), batch.quality, batch.group, w)
        total = total + w.rank * rank
        parts["rank"] = rank.item()
    parts["loss"] = total.item()
    return total, parts


def context_loss(mod_logits: torch.Tensor, anat_logits: torch.Tensor, batch: TrainBatch
                 ) -> torch.Tensor:
    """Modality + anatomy cross-entropy, averaged over the slices."""
    return (F.cross_entropy(mod_logits.float(), batch.modality)
            + F.cross_entropy(anat_logits.float(), batch.anatomy))


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor,
                 w: LossWeights) -> torch.Tensor:
    """Logistic pairwise ranking within groups: softplus(-(q_i - q_j) / rank_scale) for each
    pair of versions i, j of one crop whose targets differ by more than `rank_margin`, i the
    better one. Zero when the batch holds no such pair.

    Pairs under the margin are skipped: ranking every pair (by simulated level, or with soft
    labels) was tried and lost (benchmarks/RESULTS.md, "Ranking loss")."""
    same = (group[:, None] == group[None, :]) & (group[:, None] >= 0)
    better = (target[:, None] - target[None, :]) > w.rank_margin
    pairs = same & better
    if not bool(pairs.any()):
        return pred.sum() * 0.0
    diff = (pred[:, None] - pred[None, :]) / w.rank_scale
    return F.softplus(-diff)[pairs].mean()


def lr_factor(step: int, progress: float, optim: OptimConfig) -> float:
    """Linear warmup over `warmup_steps`, then cosine from 1 to `min_lr_ratio` over progress;
    with `cycles` > 1, that many equal cosines back to back (restarts without warmup: the
    optimizer state is warm)."""
    warm = min(1.0, (step + 1) / max(1, optim.warmup_steps))
    p = min(1.0, max(0.0, progress)) * optim.cycles
    within = p - min(int(p), optim.cycles - 1)
    cos = 0.5 * (1.0 + math.cos(math.pi * within))
    return warm * (optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cos)


def schedule_progress(step: int, elapsed_s: float, total_steps: int,
                      budget_s: float | None) -> float:
    """How far through its schedule a run is: max(step / steps, elapsed / time budget)."""
    p = step / max(1, total_steps)
    if budget_s:
        p = max(p, elapsed_s / budget_s)
    return p


def cycles_done(progress: float, cycles: int) -> int:
    """How many of the schedule's cosine cycles have ended at this progress."""
    return min(cycles, int(max(0.0, progress) * cycles + 1e-9))


def make_optimizer(model: torch.nn.Module, optim: OptimConfig,
                   params: Sequence[torch.nn.Parameter] | None = None) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, embeddings, queries and position tables."""
    chosen = {id(p) for p in (params if params is not None else model.parameters())}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if id(p) not in chosen or not p.requires_grad:
            continue
        plain_matrix = p.dim() == 2 and name.endswith(".weight") and "prompts." not in name
        (decay if plain_matrix else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas)


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(out: Path, model: MedIQANet, opt: torch.optim.Optimizer,
                    state: dict[str, Any], keep: int = 2) -> Path:
    """out/checkpoints/step_NNNNNN/{model.safetensors, optimizer.pt, state.json} + latest.json.

    The optimizer state is a torch.save pickle: acceptable in a private checkpoint, never in
    shipped weights (those are safetensors only, written by `save_weights`).
    """
    root = out / "checkpoints"
    final = root / f"step_{state['step']:06d}"
    tmp = root / f".tmp_step_{state['step']:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(tmp / "model.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest = root / "latest.json"
    latest.with_suffix(".tmp").write_text(json.dumps({"path": final.name}), encoding="utf-8")
    os.replace(latest.with_suffix(".tmp"), latest)
    olds = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in olds[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(out: Path, model: MedIQANet, opt: torch.optim.Optimizer,
                    device: torch.device) -> dict[str, Any] | None:
    """Restore the latest checkpoint under out/, returning its state (None when there is none)."""
    latest = out / "checkpoints" / "latest.json"
    if not latest.exists():
        return None
    ckpt = out / "checkpoints" / json.loads(latest.read_text())["path"]
    model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)))
    opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device,
                                   weights_only=True))
    return json.loads((ckpt / "state.json").read_text())


# --------------------------------------------------------------------------- validation

def fixed_examples(pool: Sequence[CleanSlice], config: ModelConfig, recipe: BatchRecipe,
                   n: int, seed: int) -> list[Example]:
    """A fixed set of degraded validation examples, prompts with metadata removed."""
    val_recipe = BatchRecipe(**{**asdict(recipe), "metadata_dropout": 1.0,
                                "expert_task_fraction": 0.0})
    maker = ExampleMaker(pool, config, val_recipe)
    rng = np.random.default_rng([seed, 7])
    gen = torch.Generator().manual_seed(seed + 7)
    return [maker.example(rng, gen) for _ in range(n)]


@torch.no_grad()
def predict(model: MedIQANet, examples: Sequence[Example], device: torch.device,
            max_tokens: int = 4096) -> dict[str, np.ndarray]:
    """Model outputs for examples, batched by tokens: quality, severities, predicted ids and
    the context logits behind them."""
    model.eval()
    quality, sev, mod, ana = [], [], [], []
    i = 0
    while i < len(examples):
        chunk, used = [], 0
        while i < len(examples) and (not chunk or used + examples[i].tokens.n_tokens < max_tokens):
            chunk.append(examples[i])
            used += examples[i].tokens.n_tokens + model.n_queries
            i += 1
        b = collate(chunk, model.config).to(device)
        out = model(*b.packed.args())
        sev.append(out[0].float().cpu().numpy())
        quality.append(out[1].float().cpu().numpy())
        mod.append(out[2].float().cpu().numpy())
        ana.append(out[3].float().cpu().numpy())
    mod_logits, ana_logits = np.concatenate(mod), np.concatenate(ana)
    return {"quality": np.concatenate(quality), "severities": np.concatenate(sev),
            "modality": mod_logits.argmax(1), "anatomy": ana_logits.argmax(1),
            "modality_logits": mod_logits, "anatomy_logits": ana_logits}


def validate(model: MedIQANet, examples: Sequence[Example], device: torch.device
             ) -> dict[str, float]:
    """Quality SRCC/MAE, severity MAE and context accuracy (metadata removed) on fixed examples."""
    from scipy.stats import spearmanr

    was_training = model.training
    pred = predict(model, examples, device)
    model.train(was_training)
    target_q = np.array([e.quality for e in examples])
    target_s = np.stack([e.severities for e in examples])
    srcc = spearmanr(pred["quality"], target_q).statistic if np.ptp(target_q) > 0 else float("nan")
    return {
        "val_quality_srcc": float(srcc),
        "val_quality_mae": float(np.abs(pred["quality"] - target_q).mean()),
        "val_severity_mae": float(np.abs(pred["severities"] - target_s).mean()),
        "val_modality_acc": float(np.mean(pred["modality"]
                                          == np.array([e.modality_id for e in examples]))),
        "val_anatomy_acc": float(np.mean(pred["anatomy"]
                                         == np.array([e.anatomy_id for e in examples]))),
    }


# --------------------------------------------------------------------------- the run

def load_pool(corpus: str | None, split: str) -> list[CleanSlice]:
    """Clean slices of one corpus split (`mediqa-train corpus` builds it)."""
    from mediqa_train.corpus import open_corpus

    if corpus is None or not Path(corpus, "manifest.jsonl").exists():
        raise FileNotFoundError(
            f"no corpus at {corpus!r}: build one with `mediqa-train corpus --out corpus`")
    return list(open_corpus(corpus, split))


class JsonlLog:
    """Append-only metrics log; also echoes a short line to stdout."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None = print) -> None:
        self.path = path
        self.echo = echo

    def write(self, row: dict[str, Any], line: str | None = None) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.echo is not None and line:
            self.echo(line)


def pretrain(
    run: RunConfig,
    out: str | os.PathLike[str],
    pool: Sequence[CleanSlice],
    val_pool: Sequence[CleanSlice] | None = None,
    device: str = "cpu",
    max_minutes: float | None = None,
    max_steps: int | None = None,
    threads: int | None = None,
    resume: bool = False,
    card: dict[str, Any] | None = None,
    echo: Callable[[str], None] | None = print,
) -> Path:
    """Run (or resume) pre-training; returns the final weights directory (out/weights)."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(run.seed)
    model = MedIQANet(run.model).to(dev)
    opt = make_optimizer(model, run.optim)
    state = load_checkpoint(out_dir, model, opt, dev) if resume else None
    if state is None:
        if (out_dir / "checkpoints").exists() and not resume:
            raise FileExistsError(f"{out_dir} already holds a run; pass --resume or a new --out")
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
        state = {"step": 0, "elapsed_s": 0.0, "tokens": 0, "slices": 0}
    (out_dir / "run_config.json").write_text(json.dumps(run.to_dict(), indent=1) + "\n")
    log = JsonlLog(out_dir / "metrics.jsonl", echo)
    budget_s = None if max_minutes is None else 60.0 * max_minutes
    total_steps = run.optim.steps if max_steps is None else max_steps
    val_examples = (fixed_examples(val_pool, run.model, run.data, run.val_examples, run.seed)
                    if val_pool else [])
    val_ladders = None
    if val_pool and run.val_ladders_per_modality > 0:
        from mediqa_train.ladders import LadderSet

        eval_recipe = BatchRecipe(**{**asdict(run.data), "flip_rotate": False})
        val_ladders = LadderSet(val_pool, run.model, eval_recipe, run.val_ladders_per_modality,
                                run.seed)
    best_path = out_dir / "best_model.safetensors"

    if state.get("cycles") != run.optim.cycles:  # a new run, or a checkpoint of another schedule
        resumed_at = schedule_progress(state["step"], state["elapsed_s"], total_steps, budget_s)
        if run.snapshot_ensemble and cycles_done(resumed_at, run.optim.cycles) > 0:
            raise ValueError(f"{out_dir}: resuming past a cycle end whose snapshot was never "
                             "kept; a snapshot ensemble needs every cycle end")
        state["cycles"] = run.optim.cycles
        state["snapshots"] = cycles_done(resumed_at, run.optim.cycles)
        state["snapshot_steps"] = []
    stream = BatchStream(pool, run.model, run.data, seed=run.seed * 1_000_003 + state["step"])
    loader = DataLoader(stream, batch_size=None, num_workers=run.workers,
                        prefetch_factor=4 if run.workers else None,
                        persistent_workers=bool(run.workers))
    batches = iter(loader)
    model.train()
    step = state["step"]
    start = time.perf_counter() - state["elapsed_s"]
    window: dict[str, float] = {}
    n_window = 0
    wait_s = compute_s = 0.0
    if echo:
        echo(f"pretrain: {count_parameters(model):,} parameters, {len(pool)} training slices, "
             f"{torch.get_num_threads()} threads, device {dev}, workers {run.workers}, "
             f"from step {step}")

    def progress() -> float:
        return schedule_progress(step, time.perf_counter() - start, total_steps, budget_s)

    while progress() < 1.0:
        t0 = time.perf_counter()
        batch = next(batches).to(dev)
        t1 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = run.optim.lr * lr_factor(step, progress(), run.optim)
        outputs = model(*batch.packed.args())
        loss, parts = multitask_loss(outputs, batch, run.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), run.optim.grad_clip)
        opt.step()
        t2 = time.perf_counter()
        step += 1
        wait_s += t1 - t0
        compute_s += t2 - t1
        state["tokens"] += batch.n_patches + batch.n_slices * model.n_queries
        state["slices"] += batch.n_slices
        for k, v in parts.items():
            window[k] = window.get(k, 0.0) + v
        window["grad_norm"] = window.get("grad_norm", 0.0) + float(gnorm)
        n_window += 1
        if step % run.log_every == 0 or progress() >= 1.0:
            row = {k: v / n_window for k, v in window.items()}
            row.update(step=step, lr=opt.param_groups[0]["lr"],
                       elapsed_s=round(time.perf_counter() - start, 1),
                       step_s=round((wait_s + compute_s) / n_window, 3),
                       data_wait_s=round(wait_s / n_window, 3), tokens=state["tokens"],
                       slices=state["slices"], progress=round(progress(), 4))
            log.write(row, f"step {step:5d} loss {row['loss']:.4f} (sev {row['severity']:.4f} "
                           f"q {row['quality']:.4f} ctx {row['context']:.3f} "
                           f"rank {row.get('rank', 0.0):.3f}) "
                           f"lr {row['lr']:.2e} {row['step_s']:.2f}s/step "
                           f"(data wait {row['data_wait_s']:.2f}s) t={row['elapsed_s']:.0f}s")
            window, n_window, wait_s, compute_s = {}, 0, 0.0, 0.0
        if val_examples and (step % run.val_every == 0 or progress() >= 1.0):
            metrics = validate(model, val_examples, dev)
            if val_ladders is not None:
                metrics.update(val_ladders.score(model, dev))
            crit = metrics.get("val_ladder_srcc_modality_mean", math.nan)
            if math.isfinite(crit) and crit > state.get("best_metric", -math.inf):
                state["best_metric"], state["best_step"] = crit, step
                save_file({k: v.detach().cpu().contiguous()
                           for k, v in model.state_dict().items()}, str(best_path))
            log.write({"step": step, **metrics},
                      f"  val @ {step}: " + " ".join(f"{k.replace('val_', '', 1)}={v:.3f}"
                                                    for k, v in metrics.items()))
        ended = cycles_done(progress(), run.optim.cycles) if run.optim.cycles > 1 else 0
        snapshot = ended > state["snapshots"]
        if snapshot:
            state["snapshots"] = ended
            state["snapshot_steps"].append(step)
            _save_snapshot(out_dir, state["snapshots"], model, val_ladders, dev, log, step)
        if snapshot or step % run.ckpt_every == 0 or progress() >= 1.0:
            state["elapsed_s"] = time.perf_counter() - start
            state["step"] = step
            save_checkpoint(out_dir, model, opt, {**state, "seed": run.seed})

    elapsed = time.perf_counter() - start
    selected = step
    shipped: torch.nn.Module = model
    if run.snapshot_ensemble:
        from mediqa_cli.model.ensemble import MedIQAEnsemble

        snaps = [MedIQANet(run.model) for _ in range(int(state.get("snapshots", 0)))]
        for i, net in enumerate(snaps, start=1):
            net.load_state_dict(load_file(str(snapshot_path(out_dir, i))))
        if len(snaps) < 2:
            raise RuntimeError(f"{out_dir}: the run ended with {len(snaps)} snapshot(s); a "
                               "snapshot ensemble needs at least 2")
        shipped = MedIQAEnsemble.of(snaps).to(dev)
    elif run.select_best and best_path.exists():
        model.load_state_dict(load_file(str(best_path), device=str(dev)))
        selected = int(state["best_step"])
    facts = {
        "task": "physics-informed pre-training (simulated degradations of real slices)",
        "score_meaning": target_description(run.data.shading_weight),
        "training": {"steps": step, "selected_step": selected,
                     **({"snapshot_steps": [int(s) for s in state["snapshot_steps"]]}
                        if state["snapshot_steps"] else {}),
                     "selected_weights": (f"ensemble of the {run.optim.cycles} cycle ends "
                                          "(live weights)" if run.snapshot_ensemble
                                          else "live weights"),
                     "selection": ("the end of every cosine cycle" if run.snapshot_ensemble
                                   else "best mean within-ladder SRCC on the val sources"
                                   if run.select_best and best_path.exists()
                                   else "last step"),
                     "wall_s": round(elapsed, 1), "slices_seen": state["slices"],
                     "tokens_seen": state["tokens"], "threads": torch.get_num_threads(),
                     "device": str(dev), "machine": platform.machine(),
                     "run_config": run.to_dict()},
    }
    if val_examples:
        facts["validation"] = validate(shipped, val_examples, dev)
    facts.update(card or {})
    weights = save_weights(shipped.cpu(), out_dir / "weights", name="mediqa",
                           version=str((card or {}).get("version", "0.1.0")), card=facts)
    if echo:
        echo(f"pretrain done: {step} steps in {elapsed / 60:.1f} min -> {weights}")
    return weights


def snapshot_path(out: Path, index: int) -> Path:
    """Where a run keeps the weights of its index-th cycle end (1-based)."""
    return out / "snapshots" / f"cycle_{index}.safetensors"


def _save_snapshot(out: Path, index: int, model: MedIQANet, val_ladders: Any,
                   device: torch.device, log: JsonlLog, step: int) -> None:
    """Keep the weights of a cycle's end and log how they rank the val ladders, so the card can
    show every member of a snapshot ensemble."""
    path = snapshot_path(out, index)
    path.parent.mkdir(exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(path))
    if val_ladders is not None:
        measured = val_ladders.score(model, device)
        log.write({"step": step, "snapshot": index, **measured},
                  f"  snapshot {index} @ {step}: ladder srcc "
                  f"{measured['val_ladder_srcc_modality_mean']:.3f}")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mediqa_train.pretrain` (the same options as `mediqa-train pretrain`)."""
    ap = argparse.ArgumentParser(prog="mediqa-train pretrain", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="shipped", help="JSON path or a name in train/configs/")
    ap.add_argument("--out", required=True, help="run folder (checkpoints, metrics, weights)")
    ap.add_argument("--corpus", default="corpus", help="corpus folder (mediqa-train corpus)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    ap.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    ap.add_argument("--max-steps", type=int, default=None, help="override the config's steps")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    ap.add_argument("--seed", type=int, default=None, help="override the config's seed")
    ap.add_argument("--exclude-family", action="append", default=[], choices=PHYSICAL_FAMILIES,
                    help="never simulate this family (held-out-family experiment); repeatable")
    args = ap.parse_args(argv)
    run = RunConfig.load(args.config)
    if args.seed is not None:
        run = RunConfig.from_dict({**run.to_dict(), "seed": args.seed})
    if args.exclude_family:
        data = run.to_dict()
        data["data"]["exclude_families"] = sorted(
            set(data["data"]["exclude_families"]) | set(args.exclude_family))
        run = RunConfig.from_dict(data)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("warning: CUDA is not available, training on the CPU", file=sys.stderr)
        args.device = "cpu"
    pool = load_pool(args.corpus, "train")
    val = load_pool(args.corpus, "val")
    command = "mediqa-train pretrain " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]))
    pretrain(run, args.out, pool, val, device=args.device, max_minutes=args.max_minutes,
             max_steps=args.max_steps, threads=args.threads, resume=args.resume,
             card={"training_command": command,
                   "data": f"corpus {args.corpus} (train split: {len(pool)} slices from "
                           f"{len({s.source for s in pool})} sources)",
                   "corpus_manifest_sha256": _sha256(Path(args.corpus) / "manifest.jsonl")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
