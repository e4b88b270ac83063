"""`mediqa-train`: one Typer app, one command per job, each option declared once here.

`corpus` gathers the packaged real images into HDF5 shards (see `mediqa_train.corpus`).
`degrade` applies one physics simulator from `mediqa_train.degrade.REGISTRY` to every slice of a
scan and writes the copy in the input's own format, so a site can make test cases from its own
scans and check that `mediqa score` sees the damage. `pretrain` (`mediqa_train.pretrain`) and
`finetune` (`mediqa_train.finetune`) call their modules' Python functions directly.

A new command is one more `@app.command()` function: typed options, a lazy import of the
module that does the work, and errors printed in red with a non-zero exit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="MedIQA training tools: corpus, physics-informed degradation, "
                       "pre-training and expert fine-tuning.")
console = Console()


@app.command()
def corpus(
    out: Annotated[Path, typer.Option("--out", help="Folder for shards, manifest and summary.")],
    max_side: Annotated[int, typer.Option("--max-side", min=32,
                                          help="Cap on a slice's long side.")] = 384,
    limit_sources: Annotated[int | None, typer.Option(
        "--limit-sources", min=1, help="Use only the first N catalogue sources.")] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="Only these catalogue ids (or id prefixes).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/val/test split.")] = 0,
    cap: Annotated[int, typer.Option("--cap", min=1,
                                     help="Most slices per source and orientation.")] = 24,
    images: Annotated[Path | None, typer.Option(
        "--images", help="CSV of your own images to add: path,modality,anatomy[,layout,group]."
    )] = None,
) -> None:
    """Build the training corpus from the real images shipped in installed packages (and your
    own, with --images)."""
    from mediqa_train.corpus import build_corpus, summary_table
    from mediqa_train.sources import read_image_list

    try:
        extra = read_image_list(str(images)) if images else []
    except (OSError, ValueError) as err:
        console.print(f"[red]--images: {err}[/]")
        raise typer.Exit(2) from None
    summary = build_corpus(str(out), max_side=max_side, seed=seed, cap=cap,
                           limit_sources=limit_sources, sources=source or None, extra=extra,
                           log=lambda line: console.print(f"[yellow]{line}[/]"))
    console.print(summary_table(summary))
    if summary["regions_cut_from"]:
        console.print("cut into 4 disjoint regions (modalities with < 4 source groups): "
                      + ", ".join(summary["regions_cut_from"]))
    console.print(f"{summary['n_slices']} slices, {summary['bytes'] / 1e6:.1f} MB in {out}, "
                  f"{summary['seconds']:.1f} s")
    if not summary["n_slices"]:
        raise typer.Exit(1)


def _list_kinds() -> None:
    from mediqa_train.degrade import REGISTRY

    table = Table(title="degradation kinds")
    for column in ("kind", "modalities", "families"):
        table.add_column(column)
    for name, sim in sorted(REGISTRY.items()):
        table.add_row(name, ", ".join(sim.modalities), ", ".join(sim.families))
    console.print(table)


@app.command()
def degrade(
    input: Annotated[Path | None, typer.Argument(help="A scan file or a folder of scans.")] = None,
    output: Annotated[Path | None, typer.Argument(
        help="Output file (single-file input) or folder.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Registry key (see --list).")] = None,
    severity: Annotated[float, typer.Option("--severity", min=0.0, max=1.0)] = 0.6,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    list_kinds: Annotated[bool, typer.Option("--list", help="List kinds and exit.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Apply a kind to a scan of another modality.")] = False,
) -> None:
    """Write a degraded copy of IN to OUT in the input's own format."""
    if list_kinds:
        _list_kinds()
        return
    from mediqa_train.degrade import REGISTRY
    from mediqa_train.writers import WriterError, write_scan

    from mediqa_cli.io import Scan, discover

    if input is None or output is None or kind is None:
        raise typer.BadParameter("give IN, OUT and --kind (or --list)")
    if kind not in REGISTRY:
        raise typer.BadParameter(f"unknown kind {kind!r}; known: {', '.join(sorted(REGISTRY))}",
                                 param_hint="--kind")
    sim = REGISTRY[kind]
    params = sim.sample(torch.Generator().manual_seed(seed), severity)
    label = f"degraded {kind} s={severity:g}"
    console.print(f"{kind} at severity {severity:g} (seed {seed}): "
                  f"params {json.dumps(_jsonable(dataclasses.asdict(params)))}")
    console.print("family severities: " + ", ".join(
        f"{family} {value:.3f}" for family, value in sim.severities(params).items()))

    failures = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = list(discover([str(input)]))
    for item in found:
        if not isinstance(item, Scan):
            if item.status == "error":
                failures += 1
                console.print(f"[red]error[/] {item.paths[0]}: {item.message}")
            continue
        if item.modality and item.modality not in sim.modalities and not force:
            failures += 1
            console.print(f"[red]error[/] {item.paths[0]}: {kind} simulates "
                          f"{'/'.join(sim.modalities)}, scan is {item.modality} (--force applies"
                          " it anyway)")
            continue
        targets = [_target(p, input, output) for p in item.paths]
        start = time.perf_counter()
        try:
            written = write_scan(item, _slice_fn(sim, params, item, seed), targets, label)
        except (WriterError, ValueError, TypeError, RuntimeError) as exc:
            failures += 1
            console.print(f"[red]error[/] {item.paths[0]}: {exc}")
            continue
        where = written[0] if len(written) == 1 else f"{os.path.dirname(written[0])}/ " \
                                                      f"({len(written)} files)"
        console.print(f"wrote {escape(where)}  \\[{item.kind}, {item.n_slices} slice(s), "
                      f"{time.perf_counter() - start:.1f} s]")
    if failures:
        raise typer.Exit(1)


def _slice_fn(sim, params, scan, seed: int):  # noqa: ANN001, ANN202 - registry types
    """Reader slice -> degraded slice; one parameter draw for the scan, fresh noise per slice.

    Unknown pixel spacing (NaN, e.g. PNG) is simulated as 1 mm: the simulators need a scale.
    """
    spacing = tuple(v if math.isfinite(v) and v > 0 else 1.0 for v in scan.spacing[1:])

    def apply(image: np.ndarray, index: int) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        colour = t.dim() == 3
        if colour:
            t = t.permute(2, 0, 1).contiguous()
        rng = torch.Generator().manual_seed(seed * 1_000_003 + index + 1)
        out = sim.apply(t, spacing, params, rng)
        out = out.permute(1, 2, 0) if colour else out
        return out.detach().cpu().numpy()

    return apply


def _target(path: str, root: Path, output: Path) -> str:
    """Where the copy of `path` goes: OUT itself for a single file, OUT/<relative path> else."""
    if root.is_file():
        if output.suffix or not output.is_dir():
            return str(output)
        return str(output / os.path.basename(path))
    return str(output / os.path.relpath(path, root))


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float):
        return round(value, 6)
    return value


@app.command()
def pretrain(
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, metrics, weights.")],
    config: Annotated[str, typer.Option(
        "--config", help="Run config JSON, or a name in train/configs/.")] = "shipped",
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus folder (see `corpus`).")] = Path(
        "corpus"),
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1 ...")] = "cpu",
    max_minutes: Annotated[float | None, typer.Option(
        "--max-minutes", help="Wall-clock budget; the schedule anneals to it.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1)] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the latest checkpoint.")] = False,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    exclude_family: Annotated[list[str] | None, typer.Option(
        "--exclude-family", help="Never simulate this family (held-out-family experiment); "
                                 "repeatable.")] = None,
) -> None:
    """Pre-train on physics-simulated degradations of the corpus (see mediqa_train.pretrain)."""
    from mediqa_train.pretrain import pretrain_on_corpus

    from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

    for family in exclude_family or []:
        if family not in PHYSICAL_FAMILIES:
            raise typer.BadParameter(
                f"unknown family {family!r}; known: {', '.join(PHYSICAL_FAMILIES)}",
                param_hint="--exclude-family")
    try:
        pretrain_on_corpus(out, config=config, corpus=corpus, device=device,
                           max_minutes=max_minutes, max_steps=max_steps, threads=threads,
                           resume=resume, seed=seed, exclude_families=exclude_family or [])
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        console.print(f"[red]{escape(str(err))}[/]")
        raise typer.Exit(1) from None


@app.command()
def finetune(
    labels: Annotated[Path, typer.Option("--labels", help="labels.csv: path,score[,modality,"
                                                          "anatomy].")],
    out: Annotated[Path, typer.Option("--out", help="New weights folder.")],
    base: Annotated[Path, typer.Option("--base", help="Pre-trained weights folder.")] = Path(
        "weights"),
    folds: Annotated[int, typer.Option("--folds", min=0, help="k-fold CV (0: none).")] = 5,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="At least 120 steps run.")] = 10,
    lr: Annotated[float, typer.Option("--lr")] = 3e-3,
    unfreeze_last: Annotated[int, typer.Option(
        "--unfreeze-last", min=0, help="Also train the last N transformer blocks.")] = 0,
    lower_is_better: Annotated[bool, typer.Option(
        "--lower-is-better", help="A high label means a worse image.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device")] = "cpu",
) -> None:
    """Fine-tune the quality score on expert labels (see mediqa_train.finetune)."""
    from mediqa_train.finetune import finetune as finetune_labels

    command = (f"mediqa-train finetune --labels {labels} --out {out} --base {base} --folds "
               f"{folds} --epochs {epochs} --lr {lr} --unfreeze-last {unfreeze_last} --seed "
               f"{seed} --device {device}" + (" --lower-is-better" if lower_is_better else ""))
    try:
        finetune_labels(labels, base, out, folds=folds, epochs=epochs, lr=lr,
                        unfreeze_last=unfreeze_last, lower_is_better=lower_is_better, seed=seed,
                        device=device, command=command)
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]{escape(str(err))}[/]")
        raise typer.Exit(1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
