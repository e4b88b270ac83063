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
COMMITTED_MANIFEST = Path(__file__).with_name("manifest.csv")
HIP_LABELS = Path(__file__).with_name("labels") / "hip_spj.csv"
DEFAULT_CACHE = Path(".cache/manifest")

# Options several commands share, declared once.
ManifestOption = Annotated[Path, typer.Option("--manifest", help="Source manifest CSV.")]
MirrorOption = Annotated[Path | None, typer.Option(
    "--mirror", help="Folder of bare git mirrors to read manifest files from (else GitHub's raw "
                     "files at the pinned commits).")]
CacheOption = Annotated[Path, typer.Option("--cache", help="Where checked manifest files are "
                                                           "kept.")]


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
    manifest: Annotated[Path | None, typer.Option(
        "--manifest", help="Add the pinned public images of a source manifest (the committed "
                           "one: train/manifest.csv).")] = None,
    mirror: MirrorOption = None,
    holdout_fold: Annotated[int | None, typer.Option(
        "--holdout-fold", min=0, help="Leave this evaluation fold's groups out of the corpus, "
                                      "for `evaluate --fold`.")] = None,
    cache: CacheOption = DEFAULT_CACHE,
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
    if manifest is not None:
        extra += _manifest_sources(manifest, mirror, cache, holdout_fold)
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


def _read_manifest(manifest: Path) -> list:
    """The manifest's entries, or exit 2 with the reason (a bad row names its line)."""
    from mediqa_train.manifest import ManifestError, read_manifest

    try:
        return read_manifest(manifest)
    except (OSError, ManifestError) as err:
        console.print(f"[red]--manifest: {escape(str(err))}[/]")
        raise typer.Exit(2) from None


def _manifest_sources(manifest: Path, mirror: Path | None, cache: Path,
                      holdout_fold: int | None) -> list:
    from mediqa_train.manifest import as_sources

    entries = _read_manifest(manifest)
    if holdout_fold is not None:
        entries = [e for e in entries if e.fold != holdout_fold]
    found = as_sources(entries, cache, mirror,
                       log=lambda line: console.print(f"[yellow]{escape(line)}[/]"))
    console.print(f"manifest: {len(found)} of {len(entries)} files resolved and checked")
    return found


@app.command()
def sources(
    manifest: ManifestOption = COMMITTED_MANIFEST,
    summary: Annotated[bool, typer.Option(
        "--summary", help="Images and groups per modality (else one line per repository).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """What the committed source manifest holds, from the manifest alone (nothing is read)."""
    from mediqa_train.manifest import summary as summarise

    entries = _read_manifest(manifest)
    if not summary:
        _per_repository(entries, as_json)
        return
    counts = summarise(entries)
    if as_json:
        print(json.dumps(counts, indent=1))
        return
    table = Table(title=f"{manifest.name}: {len(entries)} files, "
                        f"{len({e.origin for e in entries})} repositories")
    for column in ("modality", "groups", "images", "ground truth"):
        table.add_column(column, justify="left" if column == "modality" else "right")
    for modality, row in counts.items():
        table.add_row(modality, str(row["groups"]), str(row["images"]), str(row["ground_truth"]))
    console.print(table)


def _per_repository(entries: list, as_json: bool) -> None:
    rows: dict[tuple[str, str], dict] = {}
    for e in entries:
        row = rows.setdefault((e.origin, e.revision), {
            "origin": e.origin, "revision": e.revision, "modalities": set(), "groups": set(),
            "images": 0, "licence": e.licence})
        row["modalities"].add(e.modality)
        row["groups"].add(e.group)
        row["images"] += 1
    out = [{**r, "modalities": sorted(r["modalities"]), "groups": len(r["groups"])}
           for r in rows.values()]
    if as_json:
        print(json.dumps(out, indent=1))
        return
    table = Table(title="manifest sources")
    for column in ("repository", "commit", "modalities", "groups", "images", "licence"):
        table.add_column(column)
    for r in out:
        table.add_row(r["origin"].removeprefix("github:"), r["revision"][:8],
                      ",".join(r["modalities"]), str(r["groups"]), str(r["images"]),
                      escape(r["licence"]))
    console.print(table)


@app.command()
def evaluate(
    weights: Annotated[Path, typer.Option(
        "--weights", help="Weights folder (or a folder of fold0..fold4 weights).")] = Path(
        "weights"),
    compare: Annotated[Path | None, typer.Option(
        "--compare", help="A second weights folder: paired differences with --weights.")] = None,
    member: Annotated[int | None, typer.Option(
        "--member", min=0, help="Score only this network of the --weights ensemble.")] = None,
    compare_member: Annotated[int | None, typer.Option(
        "--compare-member", min=0, help="Score only this network of the --compare ensemble.")
    ] = None,
    rivals: Annotated[bool, typer.Option(
        "--rivals/--no-rivals", help="Also score the classical rivals (slow; not needed for "
                                     "--compare).")] = True,
    manifest: ManifestOption = COMMITTED_MANIFEST,
    mirror: MirrorOption = None,
    cache: CacheOption = DEFAULT_CACHE,
    groups: Annotated[int, typer.Option(
        "--groups", min=2, help="Most patient groups per modality.")] = 30,
    modality: Annotated[list[str] | None, typer.Option(
        "--modality", help="Only these modalities (repeatable).")] = None,
    fold: Annotated[int | None, typer.Option(
        "--fold", min=0, help="Only this fold's groups (weights trained with --holdout-fold).")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write every ladder's values and the summary as JSON (and each ladder "
                      "as it is done to the same name .jsonl: a killed run resumes from it).")
    ] = None,
    from_json: Annotated[list[Path] | None, typer.Option(
        "--from-json", help="Summarise earlier --out files (repeatable: runs of other "
                            "modalities are pooled) instead of scoring.")] = None,
    compare_json: Annotated[list[Path] | None, typer.Option(
        "--compare-json", help="With --from-json: an earlier --out file whose model scores "
                               "(and rival columns) pair with these on the same ladders. "
                               "Repeat it for further seeds of the compared recipe: the "
                               "difference is then taken from their mean.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Ladder draws and bootstrap.")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
) -> None:
    """Rank quality on real images of many patients, degraded by code the model never trained
    on, next to BRISQUE, PIQE, NIQE and the IQMs; pooled over groups, with intervals."""
    from mediqa_train import evaluate as ev
    from mediqa_train.manifest import ManifestError

    if threads:
        torch.set_num_threads(threads)
    if compare_json and not from_json:
        raise typer.BadParameter("needs --from-json", param_hint="--compare-json")
    if from_json:
        parts = [json.loads(p.read_text()) for p in from_json]
        results = [r for part in parts for r in ev.from_jsonable(part["ladders"])]
        meta = {**parts[0]["meta"], "ground_truth_images": {
            k: v for part in parts for k, v in part["meta"]["ground_truth_images"].items()}}
        for k, path in enumerate(compare_json or []):
            earlier = json.loads(path.read_text())
            rows = ev.from_jsonable(earlier["ladders"])
            if k == 0:
                results = ev.pair_with(results, rows)
                meta = {**meta, "compare": earlier["meta"].get("weights"),
                        "compare_version": earlier["meta"].get("model_version")}
            else:
                results = ev.add_compare(results, rows, f"compare_{k + 1}")
                meta = {**meta, f"compare_{k + 1}": earlier["meta"].get("weights")}
            console.print(f"{len(results)} ladders paired with {path}")
        results, dropped = ev.common_columns(results)
        for modality, columns in dropped.items():
            console.print(f"{modality}: {', '.join(columns)} left out (not on every ladder)")
    else:
        entries = _read_manifest(manifest)
        if fold is not None:
            entries = [e for e in entries if e.fold == fold]
        sets = [ev.WeightSet("model", weights, member=member)]
        if compare is not None:
            sets.append(ev.WeightSet("compare", compare, member=compare_member))
        images = []
        chosen = ev.pick_images(entries, groups, modality)
        for entry in chosen:
            try:
                images.append(ev.load_image(entry, cache, mirror))
            except (OSError, ValueError, ManifestError) as err:
                console.print(f"[yellow]{escape(str(err))}[/]")
        console.print(f"{len(images)} images from {len({i.group for i in images})} groups; "
                      f"model {sets[0].version}" + (f", compare {sets[1].version}"
                                                     if compare else ""))
        journal = out.with_suffix(".jsonl") if out is not None else None
        results = list(ev.run_ladders(images, sets, seed, rivals=rivals, journal=journal,
                                      log=console.print))
        meta = {"weights": str(weights), "model_version": sets[0].version,
                "compare": str(compare) if compare else None,
                "compare_version": sets[1].version if compare else None,
                "manifest": str(manifest), "groups_per_modality": groups, "fold": fold,
                "seed": seed, "ground_truth_images": {
                    m: sum(1 for e in chosen if e.modality == m and e.ground_truth)
                    for m in sorted({i.modality for i in images})}}
    methods = sorted({k for r in results for k in r.values},
                     key=lambda k: (k not in ("model", "compare"), k))
    table = ev.Table(results, methods)
    compares = [m for m in methods if m == "compare" or m.startswith("compare_")]
    summary = ev.summarise(table, "model", compares or None, seed)
    _print_evaluation(summary, meta)
    if out is not None:
        ev.save(out, results, summary, meta)
        console.print(f"wrote {out}")


@app.command()
def agreement(
    labels: Annotated[Path, typer.Option(
        "--labels", help="sha256,label CSV of manifest images (1 = acceptable).")] = (
        HIP_LABELS),
    weights: Annotated[Path, typer.Option("--weights", help="Weights folder.")] = Path("weights"),
    manifest: ManifestOption = COMMITTED_MANIFEST,
    mirror: MirrorOption = None,
    cache: CacheOption = DEFAULT_CACHE,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    few_labels: Annotated[list[int] | None, typer.Option(
        "--few-labels", help="Also fine-tune on this many labels (repeatable: 10, 20, 40) and "
                             "score the images left out.")] = None,
    repeats: Annotated[int, typer.Option(
        "--repeats", min=1, help="Stratified draws per --few-labels size.")] = 5,
    rival: Annotated[str, typer.Option(
        "--rival", help="The classical measure the few-label curve is compared with.")
    ] = "iqm_noise_sigma",
    crossfit: Annotated[int, typer.Option(
        "--crossfit", min=0, help="Also fine-tune in K stratified folds of cases and compare "
                                  "the out-of-fold scores with every rival on all images "
                                  "(0: off).")] = 0,
    unfreeze_last: Annotated[int, typer.Option(
        "--unfreeze-last", min=0, help="With --crossfit: also train the last N transformer "
                                       "blocks, as `finetune --unfreeze-last`.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the figures as JSON.")] = None,
) -> None:
    """AUC of the score and of every rival against expert accept/reject labels, with bootstrap
    intervals over images; with --few-labels, the fine-tuning curve on held-out images; with
    --crossfit, the fine-tuned score cross-validated by case against every rival."""
    from mediqa_train import expert
    from mediqa_train.manifest import ManifestError

    if crossfit == 1:
        raise typer.BadParameter("needs 2 folds or more (0: off)", param_hint="--crossfit")
    try:
        images = expert.labelled_images(_read_manifest(manifest),
                                        expert.read_binary_labels(labels), cache, mirror)
    except (OSError, ValueError, ManifestError) as err:
        console.print(f"[red]{escape(str(err))}[/]")
        raise typer.Exit(2) from None
    y = np.array([im.label for im in images])
    columns = expert.score_images(images, weights, log=console.print)
    table = Table(title=f"AUC against expert labels ({len(y)} images, {int(y.sum())} "
                        f"acceptable; 95% bootstrap over images)")
    for column in ("method", "AUC", "interval"):
        table.add_column(column, justify="left" if column == "method" else "right")
    aucs = {name: [expert.auc(values, y), *expert.bootstrap_auc(values, y, seed=seed)]
            for name, values in sorted(columns.items(), key=lambda kv: kv[0] != "model")}
    for name, (value, low, high) in aucs.items():
        table.add_row(name, f"{value:.3f}", f"[{low:.3f}, {high:.3f}]")
    console.print(table)
    result: dict = {"n_images": len(y), "n_acceptable": int(y.sum()), "auc": aucs}
    if few_labels:
        if rival not in columns:
            raise typer.BadParameter(f"unknown rival {rival!r}", param_hint="--rival")
        rows = expert.few_label_curve(images, weights, columns["model"], columns[rival],
                                      few_labels, repeats, seed, log=console.print)
        curve = Table(title=f"few-label fine-tuning: AUC on the images left out (mean over "
                            f"{repeats} stratified draws; rival {rival} on the same images)")
        for column in ("labels", "fine-tuned", "untuned score", rival):
            curve.add_column(column, justify="right")
        for n in few_labels:
            part = [r for r in rows if r["n"] == n]
            curve.add_row(str(n), *[f"{np.mean([r[k] for r in part]):.3f} "
                                    f"(min {np.min([r[k] for r in part]):.3f})"
                                    for k in ("tuned", "untuned", "rival")])
        console.print(curve)
        result["few_labels"] = {"rival": rival, "draws": rows}
    if crossfit:
        result["crossfit"] = _crossfit_agreement(images, weights, columns, y, crossfit, seed,
                                                 unfreeze_last)
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")


def _crossfit_agreement(images: list, weights: Path, columns: dict[str, np.ndarray],
                        y: np.ndarray, folds: int, seed: int, unfreeze_last: int = 0) -> dict:
    """Out-of-fold fine-tuned scores, the network alone and with the site reader that
    `finetune` writes: AUC with its interval, and the paired difference with the untuned score
    and every rival on the same images."""
    from mediqa_train import expert

    tuned = expert.crossfit_scores(images, weights, folds, seed, log=console.print,
                                   unfreeze_last=unfreeze_last)
    table = Table(title=f"fine-tuned in {folds} folds of cases: out-of-fold AUC ({len(y)} "
                        "images) and the paired difference (95% bootstrap over images)")
    table.add_column("method")
    table.add_column("AUC", justify="right")
    for name in tuned:
        table.add_column(f"{name} - method", justify="right")
    everything = {**tuned, **dict(sorted(columns.items(), key=lambda kv: kv[0] != "model"))}
    rows = {name: [expert.auc(v, y), *expert.bootstrap_auc(v, y, seed=seed)]
            for name, v in tuned.items()}
    differences: dict[str, dict[str, list[float]]] = {name: {} for name in tuned}
    for name, values in everything.items():
        cells = []
        for tuned_name, tuned_values in tuned.items():
            if tuned_name == name:
                cells.append("")
                continue
            low, high = expert.paired_auc_difference(tuned_values, values, y, seed=seed)
            differences[tuned_name][name] = [low, high]
            cells.append(f"[{low:+.3f}, {high:+.3f}]")
        auc = (f"{rows[name][0]:.3f} [{rows[name][1]:.3f}, {rows[name][2]:.3f}]" if name in rows
               else f"{expert.auc(values, y):.3f}")
        table.add_row("untuned score" if name == "model" else name, auc, *cells)
    console.print(table)
    return {"folds": folds, "unfreeze_last": unfreeze_last, "auc": rows,
            "difference": differences,
            "scores": {name: [float(v) for v in values] for name, values in tuned.items()}}


def _print_evaluation(summary: dict, meta: dict) -> None:
    wide = Console(width=max(console.width, 40 + 16 * len(summary["methods"])))
    methods = summary["methods"]
    table = Table(title=f"within-ladder SRCC (ladders clean + 5 levels; {meta['model_version']})")
    table.add_column("modality / family")
    table.add_column("groups", justify="right")
    for m in methods:
        table.add_column(m, justify="right")

    def cell(v: float) -> str:
        return "-" if not math.isfinite(v) else f"{v:.2f}"

    for modality, entry in summary["modalities"].items():
        ci = entry["srcc_ci"]["model"]
        best = entry["best_classical"]
        table.add_row(f"[bold]{modality}[/] (mean)", str(entry["groups"]), *[
            f"{cell(entry['srcc'][m]['mean'])} [{cell(ci[0])}, {cell(ci[1])}]" if m == "model"
            else (f"[bold]{cell(entry['srcc'][m]['mean'])}[/]" if m == best
                  else cell(entry["srcc"][m]["mean"])) for m in methods])
        for family in entry["families"]:
            table.add_row(f"  {family}", "", *[cell(entry["srcc"][m][family]) for m in methods])
    wide.print(table)
    auc = Table(title=f"cross-image AUC: clean vs another group's level >= "
                      f"{3} (pairs of different patients)")
    auc.add_column("modality")
    for m in methods:
        auc.add_column(m, justify="right")
    for modality, entry in summary["modalities"].items():
        ci = entry["auc_ci"]["model"]
        auc.add_row(f"[bold]{modality}[/]", *[
            f"{cell(entry['auc'][m])} [{cell(ci[0])}, {cell(ci[1])}]" if m == "model"
            else cell(entry["auc"][m]) for m in methods])
        by_family = entry.get("auc_by_family", {})  # files written before it have none
        for family in entry["families"] if by_family else ():
            auc.add_row(f"  {family}", *[cell(by_family[m][family]) if m in by_family else ""
                                         for m in methods])
    wide.print(auc)
    pooled = summary["pooled"]
    line = (f"pooled (mean over modalities) SRCC: model {pooled['srcc']['model']:.3f} "
            f"[{pooled['ci_model'][0]:.3f}, {pooled['ci_model'][1]:.3f}]")
    if "ci_difference" in pooled:
        low, high = pooled["ci_difference"]
        compares = summary.get("compared_with_mean_of", ["compare"])
        against = "compare" if len(compares) == 1 else f"mean({', '.join(compares)})"
        base = float(np.mean([pooled["srcc"][c] for c in compares]))
        line += (f"; model - {against} {pooled['srcc']['model'] - base:+.3f}"
                 f" [{low:+.3f}, {high:+.3f}]")
        for modality, entry in summary["modalities"].items():
            a, b = entry["paired_srcc"]
            line += f"\n  {modality}: paired SRCC difference [{a:+.3f}, {b:+.3f}]"
            a, b = entry["paired_auc"]
            line += f"; AUC [{a:+.3f}, {b:+.3f}]"
            for family, (a, b) in entry.get("paired_family_srcc", {}).items():
                line += f"\n    {family}: [{a:+.3f}, {b:+.3f}]"
    console.print(line)


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
    init_weights: Annotated[str | None, typer.Option(
        "--init-weights", help="Warm start from this weights folder in place of the config's "
                               "`init_weights`; 'none' starts from random weights.")] = None,
) -> None:
    """Pre-train on physics-simulated degradations of the corpus (see mediqa_train.pretrain)."""
    from mediqa_train.pretrain import pretrain_on_corpus

    from mediqa_cli.model.weights import WeightsError
    from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

    for family in exclude_family or []:
        if family not in PHYSICAL_FAMILIES:
            raise typer.BadParameter(
                f"unknown family {family!r}; known: {', '.join(PHYSICAL_FAMILIES)}",
                param_hint="--exclude-family")
    try:
        pretrain_on_corpus(out, config=config, corpus=corpus, device=device,
                           max_minutes=max_minutes, max_steps=max_steps, threads=threads,
                           resume=resume, seed=seed, exclude_families=exclude_family or [],
                           init_weights=init_weights)
    except (FileNotFoundError, FileExistsError, ValueError, WeightsError) as err:
        console.print(f"[red]{escape(str(err))}[/]")
        raise typer.Exit(1) from None


@app.command("domain-profile")
def domain_profile(
    out: Annotated[Path, typer.Option("--out", help="Weights folder to write domain.json into.")],
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus folder (see `corpus`).")] = Path(
        "corpus"),
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbour whose distance counts.")] = 3,
    quantile: Annotated[float, typer.Option(
        "--quantile", min=0.5, max=1.0,
        help="Held-out corpus slices within the threshold.")] = 0.95,
    max_per_modality: Annotated[int, typer.Option("--max-per-modality", min=2)] = 300,
) -> None:
    """Out-of-domain references: the corpus slices' physics measures (mediqa_cli.domain)."""
    from mediqa_train.domain_profile import fit_on_corpus

    try:
        fit_on_corpus(corpus, out, k, quantile, max_per_modality, echo=console.print)
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]{escape(str(err))}[/]")
        raise typer.Exit(1) from None


@app.command("physics-head")
def physics_head(
    weights: Annotated[Path, typer.Option("--weights", help="Weights folder to fit beside and "
                                                            "write physics_head.json into.")],
    modality: Annotated[list[str], typer.Option(
        "--modality", help="Modalities that get a reader (repeatable).")],
    manifest: ManifestOption = COMMITTED_MANIFEST,
    holdout_fold: Annotated[int, typer.Option(
        "--holdout-fold", help="The fold the weights never trained on; never read.")] = 0,
    groups: Annotated[int, typer.Option("--groups", min=1, help="Images per training fold.")] = 8,
    share: Annotated[float, typer.Option(
        "--share", min=0.0, help="The reader's spread as a share of the network logit's.")] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Simulators' seed.")] = 3,
    clean_spread: Annotated[float, typer.Option(
        "--clean-spread", min=0.0,
        help="Penalty on the term's spread over clean slices (0: none).")] = 0.0,
    cache: CacheOption = DEFAULT_CACHE,
    mirror: MirrorOption = None,
) -> None:
    """Fit the physics-token reader added to the network's logit (mediqa_cli.physics_head) on
    our simulators' ladders of training patients, per modality; readers already in the folder
    for other modalities are kept."""
    from mediqa_train.physics_head import fit_head

    from mediqa_cli.physics_head import PhysicsHead

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = fit_head(weights, manifest, modality, holdout_fold, groups, share, seed,
                            cache, mirror, echo=console.print, clean_spread=clean_spread,
                            keep=PhysicsHead.load(weights))
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]{escape(str(err))}[/]")
        raise typer.Exit(1) from None
    console.print(f"wrote {head.save(weights)}")


@app.command("exposure-floor")
def exposure_floor(
    weights: Annotated[Path, typer.Option(
        "--weights", help="Weights folder whose calibration prices a stop; physics_head.json "
                          "there gets the floors.")],
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus of the weights' clean slices.")],
    modality: Annotated[list[str] | None, typer.Option(
        "--modality", help="Photograph modalities that get a floor (repeatable).")] = None,
    stops_below: Annotated[float, typer.Option(
        "--stops-below", min=0.0, help="Bound: stops below the median clean display mean.")] = 2.0,
) -> None:
    """Exposure floors for photographs (mediqa_cli.physics_head.ExposureFloor): a fixed price
    per stop of light below a bound under the clean corpus' typical level; readers are kept."""
    from mediqa_train.exposure_floor import PHOTOGRAPHS, fit_floors, with_floors

    from mediqa_cli.physics_head import PhysicsHead

    try:
        floors, fitted_on = fit_floors(corpus, weights, modality or PHOTOGRAPHS, stops_below)
        head = with_floors(PhysicsHead.load(weights), floors, fitted_on)
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]{escape(str(err))}[/]")
        raise typer.Exit(1) from None
    for name, floor in sorted(floors.items()):
        console.print(f"{name}: bound {floor.bound:.4f}, {floor.per_stop:.3f} logits per stop")
    console.print(f"wrote {head.save(weights)}")


@app.command()
def calibrate(
    from_json: Annotated[list[Path], typer.Option(
        "--from-json", help="`evaluate --out` files of the weights to calibrate (repeatable).")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Weights folder to write calibration.json into (omit: check only).")] = None,
    check_out: Annotated[Path | None, typer.Option(
        "--check-out", help="Write the cross-fitted grade check as JSON.")] = None,
    method: Annotated[str, typer.Option(
        "--method", help="Which scores of the files: model or compare.")] = "model",
) -> None:
    """Anchor the grade bands on ladder steps (mediqa_cli.calibration) and say, cross-fitted by
    patient group, how often each grade meets each step, beside the raw score's bands."""
    from mediqa_train import calibration as cal
    from mediqa_train.evaluate import from_jsonable
    from rich.table import Table

    parts = [json.loads(p.read_text()) for p in from_json]
    results = [r for part in parts for r in from_jsonable(part["ladders"])]
    versions = sorted({str(part["meta"].get("model_version" if method == "model" else
                                            "compare_version")) for part in parts})
    samples = cal.step_samples(results, method)
    if not samples:
        console.print(f"[red]no {method!r} scores in {', '.join(map(str, from_json))}[/]")
        raise typer.Exit(1)
    check = cal.crossfit_check(samples)
    table = Table(title="grades against ladder steps, cross-fitted by group (raw -> calibrated)")
    for column in ("modality", "images", "steps 0-1 graded A", "steps 3-5 graded C/D",
                   "balanced accuracy C/D"):
        table.add_column(column)
    for modality, images, rates in cal.check_rows(check, arrow="->"):
        table.add_row(modality, str(images), *rates)
    console.print(table)
    if check_out is not None:
        check_out.parent.mkdir(parents=True, exist_ok=True)
        check_out.write_text(json.dumps({"versions": versions, "files": [str(p) for p in from_json],
                                         "check": check}, indent=1) + "\n")
        console.print(f"wrote {check_out}")
    if out is not None:
        names = ", ".join(p.name for p in from_json)
        fitted_on = f"{len(results)} ladders of {', '.join(versions)} ({names})"
        try:
            path = cal.fit_calibration(samples, fitted_on).save(out)
        except ValueError as err:
            console.print(f"[red]{escape(str(err))}[/]")
            raise typer.Exit(1) from None
        console.print(f"wrote {path}")


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
