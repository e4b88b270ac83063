"""The pre-training loop: physics-informed pre-training of MedIQANet on simulated degradations
of real slices.

`pretrain` runs (or resumes) one run into a folder: batches from `mediqa_train.batches` in
DataLoader workers, the loss of `mediqa_train.losses`, AdamW and the schedule of
`mediqa_train.optim`, checkpoints and cycle-end snapshots of `mediqa_train.checkpoints`, and
every `val_every` steps the metrics of `mediqa_train.validation` (plus the within-ladder SRCC on
the val sources when `val_ladders_per_modality` > 0). Metrics go to `metrics.jsonl` and stdout;
the final weights are written with `save_weights` (safetensors + model card): the last step's,
the best val step's (`select_best`), or with `snapshot_ensemble` the N cycle ends of an
`optim.cycles` = N run as one ensemble (`mediqa_cli/model/ensemble.py`). `pretrain_on_corpus`
is what `mediqa-train pretrain` runs: a config by name, a corpus folder, and the card facts
that say how to reproduce the run. The recipe itself is `mediqa_train.config.RunConfig`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from mediqa_train.batches import BatchRecipe, BatchStream, CleanSlice
from mediqa_train.checkpoints import load_checkpoint, save_checkpoint, save_snapshot, snapshot_path
from mediqa_train.config import RunConfig
from mediqa_train.losses import multitask_loss
from mediqa_train.optim import cycles_done, lr_factor, make_optimizer, schedule_progress
from mediqa_train.quality import target_description
from mediqa_train.validation import fixed_examples, predict, validate
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from mediqa_cli.model.network import MedIQANet, count_parameters
from mediqa_cli.model.weights import save_weights


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
        if run.init_weights:
            warm_start(model, run.init_weights, run.init_member, echo)
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
            save_snapshot(out_dir, state["snapshots"], model)
            if val_ladders is not None:  # so the card can show every member of the ensemble
                measured = val_ladders.score(model, dev)
                log.write({"step": step, "snapshot": state["snapshots"], **measured},
                          f"  snapshot {state['snapshots']} @ {step}: ladder srcc "
                          f"{measured['val_ladder_srcc_modality_mean']:.3f}")
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


def warm_start(model: MedIQANet, weights: str, member: int,
               echo: Callable[[str], None] | None = print) -> None:
    """Copy one member's tensors of a weights folder into `model`.

    Every tensor of the older network must fit (same shapes); tensors only the new network has
    (a module the older config did not enable) keep their initialisation. Anything else is an
    error, so a warm start never silently drops what it was meant to carry over.
    """
    from mediqa_cli.model.ensemble import members_of
    from mediqa_cli.model.weights import load_weights

    path = Path(weights)
    if not path.is_absolute() and not path.exists():
        path = Path(__file__).resolve().parent.parent / path
    source, _ = load_weights(path, torch.device("cpu"))
    nets = members_of(source)
    if not 0 <= member < len(nets):
        raise ValueError(f"{weights} has {len(nets)} member(s); init_member {member} is "
                         "out of range")
    state = nets[member].state_dict()
    own = model.state_dict()
    misfit = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if misfit:
        raise ValueError(f"warm start from {weights}: tensors that do not fit: {misfit[:5]}")
    model.load_state_dict(state, strict=False)
    if echo:
        new = sorted({k.split(".")[0] for k in own if k not in state})
        echo(f"warm start from {weights} member {member}; new modules: {', '.join(new) or '-'}")


def pretrain_on_corpus(
    out: str | Path,
    config: str = "shipped",
    corpus: str | Path = "corpus",
    device: str = "cpu",
    max_minutes: float | None = None,
    max_steps: int | None = None,
    threads: int | None = None,
    resume: bool = False,
    seed: int | None = None,
    exclude_families: Sequence[str] = (),
    init_weights: str | None = None,
    echo: Callable[[str], None] | None = print,
) -> Path:
    """`mediqa-train pretrain`: the run config `config` (a JSON path or a name in
    train/configs/) with `seed`, `init_weights` and `exclude_families` applied, trained on the
    train split of `corpus` and validated on its val split. `init_weights` replaces the
    config's warm start ("none": random weights), so that one config serves every stage of a
    chain of runs. The model card records the command that reproduces the run and the corpus
    manifest's sha256. Returns the weights folder."""
    data = RunConfig.load(config).to_dict()  # the overrides, then one strict load
    if seed is not None:
        data["seed"] = seed
    if init_weights is not None:
        data["init_weights"] = None if init_weights.lower() == "none" else init_weights
        data["init_member"] = 0
    if exclude_families:
        data["data"]["exclude_families"] = sorted(
            set(data["data"]["exclude_families"]) | set(exclude_families))
    run = RunConfig.from_dict(data)
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("warning: CUDA is not available, training on the CPU", file=sys.stderr)
        device = "cpu"
    pool = load_pool(str(corpus), "train")
    val = load_pool(str(corpus), "val")
    command = ["mediqa-train pretrain", f"--out {out}", f"--config {config}",
               f"--corpus {corpus}", f"--device {device}"]
    command += [f"--exclude-family {family}" for family in exclude_families]
    command += [f"{flag} {value}" for flag, value in (
        ("--max-minutes", max_minutes), ("--max-steps", max_steps), ("--threads", threads),
        ("--seed", seed), ("--init-weights", init_weights)) if value is not None]
    command += ["--resume"] if resume else []
    manifest = Path(corpus) / "manifest.jsonl"
    return pretrain(run, out, pool, val, device=device, max_minutes=max_minutes,
                    max_steps=max_steps, threads=threads, resume=resume, echo=echo,
                    card={"training_command": " ".join(command),
                          "data": f"corpus {corpus} (train split: {len(pool)} slices from "
                                  f"{len({s.source for s in pool})} sources)",
                          "corpus_manifest_sha256": hashlib.sha256(
                              manifest.read_bytes()).hexdigest()})


# `predict` and `RunConfig` are imported from here by older callers (benchmarks/accuracy.py).
__all__ = ["JsonlLog", "RunConfig", "load_pool", "predict", "pretrain", "pretrain_on_corpus"]
