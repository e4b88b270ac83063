"""The `mediqa` command: score archives, describe the install, build demo data.

Exit codes (documented in README): 0 all scans ok; 1 some scans failed; 2 usage error;
3 some scans scored under --fail-under (and none failed); 4 an input path is missing or
unreadable; 5 the output cannot be written; 6 the model weights are invalid (checksum or
config mismatch) or cannot run on the requested device/backend; 130 interrupted.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

import mediqa_cli
from mediqa_cli.exit_codes import EXIT_INTERRUPTED, EXIT_OUTPUT, EXIT_USAGE, EXIT_WEIGHTS
from mediqa_cli.taxonomy import ANATOMIES, MODALITIES

log = logging.getLogger("mediqa")

app = typer.Typer(
    name="mediqa",
    help="Medical image quality assessment for DICOM, NIfTI and 2D image archives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Backend(str, Enum):
    eager = "eager"
    compile = "compile"
    torchscript = "torchscript"
    export = "export"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test runner swaps and closes it)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _setup_logging(quiet: bool, verbose: int) -> None:
    """Our logger at INFO (-q: WARNING, -v: DEBUG); libraries stay silent unless -vv.

    Library lines (pydicom's "Reading file '<path>'", decoder tracebacks, header warnings) name
    raw paths: they are shown only when asked for twice, and still pass the privacy filter.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=logging.WARNING, handlers=[_StderrHandler()], force=True,
                        format="%(asctime)s mediqa %(levelname)s %(message)s")
    logging.getLogger("mediqa").setLevel(level)
    libraries = logging.DEBUG if verbose >= 2 else logging.CRITICAL
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(libraries)
    for name in ("pydicom", "nibabel", "PIL", "h5py", "tifffile"):
        logging.getLogger(name).setLevel(libraries)
    if verbose >= 2:
        logging.getLogger().setLevel(logging.DEBUG)
    warnings.filterwarnings("default")


def _check_choice(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if value is None:
        return None
    for choice in allowed:
        if value.lower() == choice.lower():
            return choice
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=name)


def _check_views(value: int) -> int:
    from mediqa_cli.views import VIEW_COUNTS

    if value not in VIEW_COUNTS:
        raise typer.BadParameter(f"{value} is not one of {VIEW_COUNTS}", param_hint="--views")
    return value


@app.command()
def score(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to scan (recursively).")],
    out: Annotated[
        str, typer.Option("--out", "-o", help="Report file; '-' streams CSV to stdout.")
    ],
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="csv, jsonl or h5 (default: from --out).")
    ] = None,
    hdf5: Annotated[
        Path | None, typer.Option("--hdf5", help="Also write per-slice detail to this HDF5 file.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Decoding processes; 0 decodes in the main process. Default: one per spare "
            "core, at most 4.",
            min=0,
        ),
    ] = None,
    device: Annotated[Device, typer.Option(help="Where the model runs.")] = Device.auto,
    backend: Annotated[Backend, typer.Option(help="Model execution backend.")] = Backend.eager,
    views: Annotated[
        int,
        typer.Option(
            help="Mirror views per slice whose outputs are averaged (1, 2 or 4): steadier "
            "ranking at 2x or 4x the model's compute.",
        ),
    ] = 1,
    resume: Annotated[
        bool, typer.Option(help="Keep rows of unchanged scans from an earlier (or killed) run.")
    ] = False,
    fail_under: Annotated[
        float | None, typer.Option(help="Exit 3 when any scan's score is below this (0-100).")
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help=f"Override the modality: {', '.join(MODALITIES)}.")
    ] = None,
    anatomy: Annotated[
        str | None, typer.Option(help=f"Override the anatomy: {', '.join(ANATOMIES)}.")
    ] = None,
    max_slices: Annotated[int, typer.Option(help="Salient slices scored per volume.", min=1)] = 8,
    include_phi: Annotated[
        bool, typer.Option(help="Add patient name/ID/dates columns (off by default).")
    ] = False,
    deid: Annotated[
        str,
        typer.Option(help="default: keep descriptors (manufacturer, model, protocol, ...); "
                     "strict: drop them too."),
    ] = "default",
    pseudonym_key: Annotated[
        Path | None,
        typer.Option(help="Site key file for the patient/study/series/scanner pseudonyms "
                     "(default: created on first use in the user's config folder)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="Replace an existing --out file that is not a MedIQA report (never an "
                     "input, a folder or a device)."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    verbose: Annotated[
        int,
        typer.Option("--verbose", "-v", count=True,
                     help="-v: one log line per scan; -vv: library debug lines too."),
    ] = 0,
    ray: Annotated[
        str | None,
        typer.Option("--ray", metavar="auto|ADDRESS",
                     help="Decode and score on a Ray cluster: 'auto' (the one this machine "
                     "joined with `ray start`) or its HOST:PORT. Needs the ray extra; "
                     "docs/ray.md."),
    ] = None,
) -> None:
    """Score every scan under PATHS and write one report row per scan."""
    from mediqa_cli.runner import ScoreRequest, run_score

    _setup_logging(quiet, verbose)
    request = ScoreRequest(
        paths=[str(p) for p in paths],
        out=out,
        format=format,
        hdf5=str(hdf5) if hdf5 else None,
        workers=-1 if workers is None else workers,
        device=device.value,
        backend=backend.value,
        views=_check_views(views),
        resume=resume,
        fail_under=fail_under,
        modality=_check_choice(modality, MODALITIES, "--modality"),
        anatomy=_check_choice(anatomy, ANATOMIES, "--anatomy"),
        max_slices=max_slices,
        include_phi=include_phi,
        deid=_check_choice(deid, ("default", "strict"), "--deid") or "default",
        pseudonym_key=str(pseudonym_key) if pseudonym_key else None,
        force=force,
        quiet=quiet,
        verbose=verbose,
        ray=ray,
    )
    if fail_under is not None and not (0 <= fail_under <= 100 and math.isfinite(fail_under)):
        raise typer.BadParameter("must be within 0..100", param_hint="--fail-under")
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
) -> None:
    """Build a demo archive from real packaged images, score it and print the report."""
    from mediqa_cli.demo import build_demo_tree, default_demo_dir
    from mediqa_cli.runner import ScoreRequest, print_report_table, run_score

    _setup_logging(quiet, 0)
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
