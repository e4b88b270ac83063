"""The `mediqa` command: score archives, describe the install, build demo data.

Exit codes (documented in README): 0 all scans ok; 1 some scans failed; 2 usage error;
3 some scans scored under --fail-under (and none failed); 4 an input path is missing or
unreadable; 5 the output cannot be written; 6 the model weights are invalid (checksum or
config mismatch) or cannot run on the requested device/backend; 7 `mediqa trends` found a
scanner x protocol in alert; 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

import mediqa_cli
from mediqa_cli.exit_codes import EXIT_INTERRUPTED, EXIT_OUTPUT, EXIT_USAGE, EXIT_WEIGHTS
from mediqa_cli.logs import setup_logging as _setup_logging
from mediqa_cli.options import BACKENDS, DEFAULTS, DEVICES, OPTION_NAMES, OptionError, merge
from mediqa_cli.taxonomy import ANATOMIES, MODALITIES

log = logging.getLogger("mediqa")

app = typer.Typer(
    name="mediqa",
    help="Medical image quality assessment for DICOM, NIfTI and 2D image archives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _given_options(ctx: typer.Context) -> dict[str, object]:
    """The options typed on the command line: a flag left at its default must not hide the
    value a --config file gives."""
    given = {}
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)
        if name in OPTION_NAMES and source is not None and source.name not in _DEFAULT_SOURCES:
            given[name] = value
    return given


_DEFAULT_SOURCES = ("DEFAULT", "DEFAULT_MAP")


@app.command()
def score(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to scan (recursively).")],
    out: Annotated[
        str, typer.Option("--out", "-o", help="Report file; '-' streams CSV to stdout.")
    ],
    config: Annotated[
        Path | None,
        typer.Option(help="TOML file of defaults for the options below (keys spelt as the "
                     "flags, e.g. max-slices = 4); flags given here win."),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", "-f", help="csv, jsonl, h5 or parquet (default: from --out)."),
    ] = DEFAULTS.format,
    hdf5: Annotated[
        Path | None, typer.Option("--hdf5", help="Also write per-slice detail to this HDF5 file.")
    ] = DEFAULTS.hdf5,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Decoding processes; 0 decodes in the main process. Default: one per spare "
            "core, at most 4.",
        ),
    ] = DEFAULTS.workers,
    device: Annotated[
        str, typer.Option(help=f"Where the model runs: {', '.join(DEVICES)}.")
    ] = DEFAULTS.device,
    backend: Annotated[
        str, typer.Option(help=f"Model execution backend: {', '.join(BACKENDS)}.")
    ] = DEFAULTS.backend,
    precision: Annotated[
        str,
        typer.Option(help="Network arithmetic on the CPU: auto (bf16 transformer blocks where "
                     "the CPU has native bf16, else fp32), fp32, bf16."),
    ] = DEFAULTS.precision,
    views: Annotated[
        int,
        typer.Option(
            help="Mirror views per slice whose outputs are averaged (1, 2 or 4): steadier "
            "ranking at 2x or 4x the model's compute.",
        ),
    ] = DEFAULTS.views,
    resume: Annotated[
        bool, typer.Option(help="Keep rows of unchanged scans from an earlier (or killed) run.")
    ] = DEFAULTS.resume,
    fail_under: Annotated[
        float | None, typer.Option(help="Exit 3 when any scan's score is below this (0-100).")
    ] = DEFAULTS.fail_under,
    modality: Annotated[
        str | None, typer.Option(help=f"Override the modality: {', '.join(MODALITIES)}.")
    ] = DEFAULTS.modality,
    anatomy: Annotated[
        str | None, typer.Option(help=f"Override the anatomy: {', '.join(ANATOMIES)}.")
    ] = DEFAULTS.anatomy,
    max_slices: Annotated[
        int, typer.Option(help="Salient slices scored per volume.")
    ] = DEFAULTS.max_slices,
    include_phi: Annotated[
        bool, typer.Option(help="Add patient name/ID/dates columns (off by default).")
    ] = DEFAULTS.include_phi,
    deid: Annotated[
        str,
        typer.Option(help="default: keep descriptors (manufacturer, model, protocol, ...); "
                     "strict: drop them too."),
    ] = DEFAULTS.deid,
    pseudonym_key: Annotated[
        Path | None,
        typer.Option(help="Site key file for the patient/study/series/scanner pseudonyms "
                     "(default: created on first use in the user's config folder)."),
    ] = DEFAULTS.pseudonym_key,
    force: Annotated[
        bool,
        typer.Option(help="Replace an existing --out file that is not a MedIQA report (never an "
                     "input, a folder or a device)."),
    ] = DEFAULTS.force,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")
    ] = DEFAULTS.quiet,
    verbose: Annotated[
        int,
        typer.Option("--verbose", "-v", count=True,
                     help="-v: one log line per scan; -vv: library debug lines too."),
    ] = DEFAULTS.verbose,
    log_file: Annotated[
        Path | None, typer.Option(help="Also append the log lines to this file.")
    ] = DEFAULTS.log_file,
    log_format: Annotated[
        str,
        typer.Option(help="Log lines as text, or json: one object a line with timestamp, "
                     "level, message and the scan's scan_id and path."),
    ] = DEFAULTS.log_format,
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML page of the report.")
    ] = DEFAULTS.html,
    history: Annotated[
        Path | None, typer.Option(help="Also record the run in this SQLite history "
                                  "(for `mediqa trends`).")
    ] = DEFAULTS.history,
    ray: Annotated[
        str | None,
        typer.Option("--ray", metavar="auto|ADDRESS",
                     help="Decode and score on a Ray cluster: 'auto' (the one this machine "
                     "joined with `ray start`) or its HOST:PORT. Needs the ray extra; "
                     "docs/ray.md."),
    ] = DEFAULTS.ray,
) -> None:
    """Score every scan under PATHS and write one report row per scan."""
    from mediqa_cli.runner import ScoreRequest, run_score

    try:
        values = merge(_given_options(ctx), config)
        request = ScoreRequest(paths=[str(p) for p in paths], out=out, **values)
    except OptionError as exc:
        hint = "--config" if exc.option == "config" else exc.flag
        raise typer.BadParameter(exc.detail, param_hint=hint) from exc
    _setup_logging(request.quiet, request.verbose, request.log_format)
    raise typer.Exit(run_score(request))


@app.command()
def info() -> None:
    """Versions, device, Triton availability and installed weights (with checksum)."""
    import importlib.util
    import platform

    import torch

    lines: list[tuple[str, str]] = [
        ("mediqa", mediqa_cli.__version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("cuda available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        lines.append(("cuda device", torch.cuda.get_device_name(0)))
    from mediqa_cli.model.precision import auto_precision_note

    lines.append(("cpu precision", auto_precision_note()))
    triton_spec = importlib.util.find_spec("triton")
    if triton_spec is None:
        lines.append(("triton", "not installed (CPU path needs none; GPU kernels need it)"))
    else:
        import importlib.metadata

        version = importlib.metadata.version("triton")
        usable = "usable" if torch.cuda.is_available() else "installed, no GPU: CPU twins in use"
        lines.append(("triton", f"{version} ({usable})"))
    for name in ("pydicom", "nibabel", "h5py", "safetensors", "pylibjpeg", "numpy"):
        lines.append((name, _dist_version(name)))
    lines.extend(_weights_lines())
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key:<{width}}  {value}")


def _dist_version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _weights_lines() -> list[tuple[str, str]]:
    from mediqa_cli.runner import describe_weights

    return describe_weights()


@app.command()
def demo(
    out: Annotated[str, typer.Option("--out", "-o", help="Report file.")] = "demo_report.csv",
    data_dir: Annotated[
        Path | None, typer.Option(help="Where to build the demo archive (default ./demo_data).")
    ] = None,
    workers: Annotated[int, typer.Option(min=0, help="Decoding processes.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    trends: Annotated[
        bool, typer.Option(help="Instead: a synthetic 30-night history with one scanner "
                           "degrading, its trend table and page (in ./demo_trends).")
    ] = False,
) -> None:
    """Build a demo archive from real packaged images, score it and print the report."""
    from mediqa_cli.demo import build_demo_tree, default_demo_dir
    from mediqa_cli.runner import ScoreRequest, print_report_table, run_score

    _setup_logging(quiet, 0)
    if trends:
        from mediqa_cli.trend_demo import run_trend_demo

        raise typer.Exit(run_trend_demo(data_dir or Path("demo_trends"), echo=typer.echo))
    target = data_dir or default_demo_dir()
    started = time.perf_counter()
    missing = build_demo_tree(target)
    for note in missing:
        log.warning("demo: left out %s", note)
    log.info("demo archive written to %s in %.1fs", target, time.perf_counter() - started)
    request = ScoreRequest(paths=[str(target)], out=out, workers=workers, quiet=quiet)
    code = run_score(request)
    if not quiet and out != "-":
        print_report_table(Path(out), root=str(target))
    raise typer.Exit(code)


@app.command("report")
def report_page(
    report: Annotated[Path, typer.Argument(help="A MedIQA report (.csv, .jsonl, .h5, .parquet).")],
    html: Annotated[Path, typer.Option(help="The page to write.")],
    images: Annotated[
        Path | None,
        typer.Option(help="The folder the scored inputs were in (report paths are relative to "
                     "it): thumbnails on the cards."),
    ] = None,
    worst: Annotated[int, typer.Option(min=0, help="Cards for the N lowest scores.")] = 12,
    card_under: Annotated[float, typer.Option(help="Cards for every score below this.")] = 40.0,
    max_cards: Annotated[int, typer.Option(min=0, help="At most this many cards.")] = 200,
    include_phi: Annotated[
        bool, typer.Option(help="Show thumbnails of images at risk of burned-in text (US, "
                           "secondary capture, BurnedInAnnotation=YES).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing non-MedIQA file.")] = False,
) -> None:
    """Write a self-contained HTML page for a report: summaries, plots, table, cards."""
    from mediqa_cli.visual_runs import ReportPageRequest, run_report_page

    _setup_logging(False, 0)
    raise typer.Exit(run_report_page(ReportPageRequest(
        report=str(report), html=str(html), images=str(images) if images else None,
        worst=worst, card_under=card_under, max_cards=max_cards, include_phi=include_phi,
        force=force)))


@app.command("trends")
def trends_command(
    history: Annotated[Path, typer.Argument(help="History written by `mediqa score --history`.")],
    html: Annotated[Path | None, typer.Option(help="Also write the trends page.")] = None,
    baseline_nights: Annotated[
        int, typer.Option(min=4, help="Nights of each scanner x protocol that set its baseline.")
    ] = 10,
    since: Annotated[
        str | None, typer.Option(help="Ignore nights before YYYY-MM-DD (a new baseline after "
                                 "a repair).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing non-MedIQA file.")] = False,
) -> None:
    """Per scanner x protocol control charts; exits 7 when a group is in alert."""
    from datetime import date

    from mediqa_cli.visual_runs import TrendsRequest, run_trends

    _setup_logging(False, 0)
    if since is not None:
        try:
            since = date.fromisoformat(since).isoformat()
        except ValueError as exc:
            raise typer.BadParameter("expected YYYY-MM-DD", param_hint="--since") from exc
    raise typer.Exit(run_trends(TrendsRequest(
        history=str(history), html=str(html) if html else None,
        baseline_nights=baseline_nights, since=since, force=force), echo=typer.echo))


@app.command("eval")
def eval_command(
    target: Annotated[Path, typer.Argument(help="A report (.csv/.jsonl/.h5) or scans to score.")],
    labels: Annotated[Path, typer.Option(help="labels.csv with path,score[,modality,anatomy].")],
    column: Annotated[str, typer.Option(help="Report column to evaluate.")] = "score",
    boot: Annotated[
        int, typer.Option(help="Bootstrap resamples for the intervals.", min=0)
    ] = 1000,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write results here.")
    ] = None,
) -> None:
    """SRCC, PLCC (after a 4-parameter logistic), KRCC and RMSE against expert labels."""
    import json
    import tempfile

    from mediqa_cli.evaluation import METRICS, evaluate
    from mediqa_cli.labels import join, read_labels
    from mediqa_cli.reports import infer_format, load_previous_rows
    from mediqa_cli.runner import ScoreRequest, run_score

    _setup_logging(False, 0)
    try:
        label_rows = read_labels(labels)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--labels") from exc
    if target.is_file() and target.suffix.lower() in (".csv", ".jsonl", ".json", ".h5", ".hdf5"):
        rows = list(load_previous_rows(target, infer_format(str(target), None)).values())
    else:
        report = Path(tempfile.mkdtemp(prefix="mediqa-eval-")) / "report.jsonl"
        run_score(ScoreRequest(paths=[str(target)], out=str(report), quiet=True))
        rows = list(load_previous_rows(report, "jsonl").values())
    preds, targets, groups, unmatched = join(label_rows, rows, column)
    if unmatched:
        log.warning("%d label(s) without a scored row, e.g. %s", len(unmatched), unmatched[0])
    if len(preds) < 3:
        log.error("only %d labelled scan(s) matched a scored row; need at least 3", len(preds))
        raise typer.Exit(EXIT_USAGE)
    results = evaluate(preds, targets, groups, n_boot=boot)
    typer.echo(f"{'group':<10} {'n':>5} " + " ".join(f"{m.upper():>22}" for m in METRICS))
    for group, row in results.items():
        cells = []
        for metric in METRICS:
            est = row[metric]
            cells.append(f"{est['value']:>7.3f} [{est['low']:.3f}, {est['high']:.3f}]")
        typer.echo(f"{group:<10} {row['n']:>5} " + " ".join(f"{c:>22}" for c in cells))
    if json_out:
        json_out.write_text(json.dumps(results, indent=2) + "\n")


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    export = "export"
    all = "all"


@app.command("export")
def export_model(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the artifacts.")],
    format: Annotated[ExportFormat, typer.Option("--format", "-f")] = ExportFormat.all,
    weights: Annotated[
        Path | None, typer.Option(help="Weights folder (default: the installed weights).")
    ] = None,
) -> None:
    """Write the model as TorchScript (model.ts) and/or a torch.export program (model.pt2)."""
    from mediqa_cli.artifacts import export_artifacts

    _setup_logging(False, 0)
    try:
        written = export_artifacts(out, format.value, weights)
    except Exception as exc:  # noqa: BLE001 - any failure is reported with its reason
        log.error("export failed: %s", exc)
        raise typer.Exit(EXIT_WEIGHTS) from exc
    for path in written:
        typer.echo(str(path))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mediqa {mediqa_cli.__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Medical image quality assessment for DICOM, NIfTI and 2D image archives."""


def main() -> None:
    """Console entry point: usage errors exit 2, Ctrl-C exits 130."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("mediqa: interrupted\n")
        _quiet_stdout()
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as done:
        if done.code == EXIT_OUTPUT:
            _quiet_stdout()  # a closed pipe must not print "Exception ignored" at shutdown
        raise


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
