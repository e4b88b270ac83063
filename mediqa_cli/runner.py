"""One `mediqa score` run: inputs, resume, engine, progress, journal, final report, exit code.

Kept apart from cli.py so tests and other front ends (a scheduler, a notebook) run exactly the
same thing the command does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediqa_cli.engine import Scorer, run
from mediqa_cli.exit_codes import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_SCAN_FAILED,
    EXIT_UNDER,
    EXIT_USAGE,
    EXIT_WEIGHTS,
)
from mediqa_cli.io import InputPathError, Scan, ScanProblem, discover
from mediqa_cli.logs import open_log_file, scan_fields
from mediqa_cli.options import ScoreOptions
from mediqa_cli.outputs import OutputError, log_target_problem, target_problem
from mediqa_cli.privacy import Privacy, load_key
from mediqa_cli.progress import ProgressBar
from mediqa_cli.reports import (
    Journal,
    infer_format,
    journal_path,
    load_previous_rows,
    stdout_writer,
    write_report,
)
from mediqa_cli.results import ScanResult
from mediqa_cli.visual_runs import after_score, check_score_targets

log = logging.getLogger("mediqa")



@dataclass(frozen=True, kw_only=True)
class ScoreRequest(ScoreOptions):
    """Everything `mediqa score` was asked to do: the inputs, the report, and the options
    (`mediqa_cli.options.ScoreOptions`, declared and checked there)."""

    paths: list[str]
    out: str

    def options(self) -> ScoreOptions:
        """The options alone, with the worker count resolved (None: `default_workers`)."""
        values = self.values()
        if values["workers"] is None:
            values["workers"] = default_workers()
        return ScoreOptions(**values)


def default_workers(cores: int | None = None) -> int:
    """One decoder per two cores (at most 4), the model keeping the rest; none on one core.

    Why half: in a run on the CPU the decoders' share (decoding, IQMs, physics tokens) and the
    model's take about the same CPU time (21 and 24 s for 250 generated scans), so halving the
    cores keeps both sides busy. On two cores one decoder beside the model (held to the other
    core) scores that archive in 29.7 s against 38.2 s in one process (benchmarks/RESULTS.md,
    "A decoder beside the model"); the command starts it warm (`engine.run`'s `warm_start`),
    so a run shorter than the worker's start-up, like the demo, is not slowed by it. Machines
    with more cores are not measured yet.
    """
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return min(4, cores // 2)


def run_score(request: ScoreRequest) -> int:
    """Run a scoring job; return the documented exit code."""
    try:
        fmt = infer_format(request.out, request.format)
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    to_stdout = request.out == "-"
    if to_stdout and fmt != "csv":
        log.error("--out - streams CSV only")
        return EXIT_USAGE
    if to_stdout and request.resume:
        log.error("--resume needs a report file, not stdout")
        return EXIT_USAGE
    out = Path(request.out)
    for path in request.paths:
        if not os.path.exists(path):
            log.error("input path does not exist: %s", path)
            return EXIT_INPUT
        if not os.access(path, os.R_OK):
            log.error("input path is not readable: %s", path)
            return EXIT_INPUT
    targets = [] if to_stdout else [(out, fmt), (journal_path(out), "jsonl")]
    if request.hdf5:
        targets.append((Path(request.hdf5), "h5"))
    for target, target_fmt in targets:
        problem = target_problem(target, target_fmt, request.paths, request.force)
        if problem:
            log.error("cannot write report: %s", problem)
            return EXIT_OUTPUT
    problem = check_score_targets(request.html, request.history, request.paths, request.force)
    if problem:
        log.error("cannot write: %s", problem)
        return EXIT_OUTPUT
    if request.log_file:
        problem = log_target_problem(Path(request.log_file), request.paths, request.force)
        if problem:
            log.error("cannot write the log file: %s", problem)
            return EXIT_OUTPUT
    with _log_file(request):
        return _score(request, fmt, out, to_stdout)


@contextlib.contextmanager
def _log_file(request: ScoreRequest) -> Iterator[None]:
    """--log-file: every line of the run, in --log-format, also appended to that file."""
    if not request.log_file:
        yield
        return
    handler = open_log_file(request.log_file, request.log_format)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def _score(request: ScoreRequest, fmt: str, out: Path, to_stdout: bool) -> int:
    """The run itself, once the arguments and the output targets are known to be sound."""
    previous: dict[str, dict[str, Any]] = {}
    if request.resume:
        previous = load_previous_rows(out, fmt)
        log.info("resume: %d earlier row(s) found", len(previous))

    try:
        privacy = Privacy(request.paths, request.include_phi, request.deid,
                          load_key(request.pseudonym_key))
    except (OSError, ValueError) as exc:
        log.error("cannot use the pseudonym key: %s", exc)
        return EXIT_USAGE
    cluster = None
    cluster_errors: tuple[type[Exception], ...] = ()  # what a lost cluster raises mid-run
    if request.ray:
        from mediqa_cli.distributed import ClusterError, RayMissing, open_cluster

        try:
            cluster = open_cluster(request.ray, request.device, request.backend, request.views,
                                   request.precision)
        except RayMissing as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        except ClusterError as exc:
            log.error("%s", exc)
            return EXIT_WEIGHTS
        scorer = None
        model_version = cluster.version
        cluster_errors = (ClusterError,)
    else:
        try:
            scorer = load_scorer(request)
        except Exception as exc:  # noqa: BLE001 - WeightsError, bad device, backend failures
            log.error("cannot load the model: %s", exc)
            return EXIT_WEIGHTS
        model_version = scorer.version if scorer is not None else None
    options = request.options()
    options_key = options.key()
    changed = Counter[str]()

    def reuse(item: Scan | ScanProblem) -> ScanResult | None:
        """An earlier row stands only if the files, the options and the model are the same."""
        row = previous.get(item.scan_id)
        if row is None or row.get("fingerprint") != item.fingerprint:
            return None
        if row.get("options") != options_key:
            changed["options"] += 1
            return None
        if row.get("status") == "ok" and (row.get("model_version") or None) != model_version:
            changed["model"] += 1
            return None
        return ScanResult.from_row(row)

    journal = None if to_stdout else Journal(journal_path(out))
    stream = stdout_writer(privacy.columns) if to_stdout else None
    sink = _Sink(privacy, journal, stream, request.verbose)
    scrubber = privacy.log_filter()
    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(scrubber)
    try:
        if journal is not None:
            journal.open(keep_existing=request.resume)
        own_files = [] if to_stdout else [str(out), str(journal_path(out))]
        if request.hdf5:
            own_files.append(request.hdf5)
        if request.log_file:
            own_files.append(request.log_file)
        items = discover(request.paths, exclude=own_files)
        reuse_rows = reuse if request.resume else None
        results = (cluster.run(items, options, reuse_rows) if cluster is not None
                   else run(items, options, scorer, reuse_rows,
                            warm_start=request.workers is None))
        bar = ProgressBar(request.paths, own_files, enabled=ProgressBar.wanted(request.quiet))
        with bar as progress, contextlib.closing(results):
            for result in results:
                sink.take(result)
                progress(result)
            sink.finish()
    except InputPathError as exc:
        log.error("%s", exc)
        return EXIT_INPUT
    except OutputError as exc:
        log.error("%s; the rows written so far stay in the journal, rerun with --resume", exc)
        if journal is not None:
            journal.close(remove=False)
        return EXIT_OUTPUT
    except cluster_errors as exc:
        log.error("%s", exc)
        if journal is not None:
            journal.close(remove=False)
        return EXIT_WEIGHTS
    except KeyboardInterrupt:
        with contextlib.suppress(OutputError):
            sink.finish()
        log.error("interrupted: %d row(s) kept in %s; rerun with --resume",
                  len(sink.rows), journal.path if journal else "stdout")
        if journal is not None:
            journal.close(remove=False)
        raise
    finally:
        for handler in handlers:
            handler.removeFilter(scrubber)
        if cluster is not None:
            cluster.close()
    rows = sink.ordered_rows()
    counts = sink.counts
    for reason, count in sorted(changed.items()):
        log.info("resume: %d scan(s) rescored because the %s changed", count, reason)
    if not rows:
        log.error("no scans found under %s (nothing written)", ", ".join(request.paths))
        if journal is not None:
            journal.close(remove=True)
        return EXIT_INPUT
    try:
        if not to_stdout:
            write_report(rows, out, fmt, privacy.columns)
        if request.hdf5:
            write_report(rows, Path(request.hdf5), "h5", privacy.columns)
    except OutputError as exc:
        log.error("%s", exc)
        if journal is not None:
            journal.close(remove=False)
        return EXIT_OUTPUT
    if journal is not None:
        journal.close(remove=True)
    if request.html or request.history:
        code = after_score(rows, request.html, request.history, sink.paths, request.include_phi,
                           request.paths)
        if code:
            return code
    under = _under_threshold(rows, request.fail_under)
    _summary(counts, sink.reused, under, request, out)
    if counts["error"]:
        return EXIT_SCAN_FAILED
    if under:
        return EXIT_UNDER
    return EXIT_OK


class _Sink:
    """Results -> public rows (through the privacy gate, once) -> journal, stdout, log lines.

    A result that was never decoded (a file that could not be parsed, a skipped object: cheap to
    redo) waits until the end of the run, so its path is published knowing every identifying
    value the run has seen.
    """

    def __init__(self, privacy: Privacy, journal: Journal | None, stream: Any,
                 verbose: int) -> None:
        self.privacy, self.journal, self.stream, self.verbose = privacy, journal, stream, verbose
        self.rows: list[tuple[int, dict[str, Any]]] = []
        self.counts: Counter[str] = Counter()
        self.reused = 0
        self._held: list[tuple[int, ScanResult]] = []
        self._order = 0
        self.paths: dict[str, tuple[str, ...]] = {}  # scan_id -> raw paths (page thumbnails)

    def take(self, result: ScanResult) -> None:
        order, self._order = self._order, self._order + 1
        if result.status == "ignored":
            self.counts["ignored"] += 1
            return
        if result.published is None and result.n_slices is None:
            self.privacy.learn(result)
            self._held.append((order, result))
            return
        self._emit(order, result)

    def finish(self) -> None:
        held, self._held = self._held, []
        for order, result in held:
            self._emit(order, result)

    def _emit(self, order: int, result: ScanResult) -> None:
        row = self.privacy.publish(result)
        if result.paths:
            self.paths[result.scan_id] = result.paths
        if result.published is not None:
            self.reused += 1
        elif self.journal is not None:
            self.journal.append(row)
        self.counts[str(row.get("status"))] += 1
        self.rows.append((order, row))
        if self.stream is not None:
            self.stream.write(row)
        _log_row(row, self.verbose)

    def ordered_rows(self) -> list[dict[str, Any]]:
        """Rows in discovery order (held rows back in their place)."""
        return [row for _, row in sorted(self.rows, key=lambda pair: pair[0])]


def load_scorer(request: ScoreRequest) -> Scorer | None:
    """The learned scorer if weights are installed; None (IQMs only) otherwise."""
    from mediqa_cli.scoring import load_default_scorer

    return load_default_scorer(request.device, request.backend, request.views,
                               request.precision)


def describe_weights() -> list[tuple[str, str]]:
    """Lines for `mediqa info` about the installed weights."""
    from mediqa_cli.scoring import describe_installed_weights

    return describe_installed_weights()


def _under_threshold(rows: list[dict[str, Any]], threshold: float | None) -> int:
    if threshold is None:
        return 0
    count = 0
    for row in rows:
        value = row.get("score")
        if isinstance(value, (int, float)) and math.isfinite(value) and value < threshold:
            count += 1
    return count


def _log_row(row: dict[str, Any], verbose: int) -> None:
    """One line per failed scan (and per scan with -v), keyed by the row's scan_id."""
    status = row.get("status")
    if status == "error":
        log.warning("error %s: %s", row.get("path"), row.get("error"), extra=scan_fields(row))
    elif verbose:
        score = row.get("score")
        shown = f"score {score:.1f}" if isinstance(score, float) else "no score"
        log.info("%s %s %s (%s)", status, row.get("path"), shown, row.get("modality") or "?",
                 extra=scan_fields(row))


def _summary(
    counts: Counter[str], reused: int, under: int, request: ScoreRequest, out: Path
) -> None:
    total = sum(v for k, v in counts.items() if k != "ignored")
    parts = [f"{total} scan(s)", f"{counts['ok']} ok", f"{counts['error']} error",
             f"{counts['skipped']} skipped"]
    if reused:
        parts.append(f"{reused} reused from the earlier report")
    if request.fail_under is not None:
        parts.append(f"{under} under {request.fail_under:g}")
    if counts["ignored"]:
        parts.append(f"{counts['ignored']} non-image file(s) ignored")
    where = "stdout" if request.out == "-" else str(out)
    level = logging.WARNING if counts["error"] else logging.INFO
    log.log(level, "%s -> %s", ", ".join(parts), where)


def print_report_table(path: Path, root: str | None = None, limit: int = 60) -> None:
    """A readable terminal summary of a CSV report (used by `mediqa demo`)."""
    import csv

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = ("path", "status", "modality", "anatomy", "shape", "score", "grade",
               "iqm_snr", "iqm_sharpness", "error")
    table = Table(title=f"{path} ({len(rows)} rows)")
    for column in columns:
        table.add_column(column, overflow="fold", max_width=40 if column == "error" else None)
    for row in rows[:limit]:
        shown = dict(row)
        if root:
            shown["path"] = os.path.relpath(row.get("path", ""), root)
        for key in ("iqm_snr", "iqm_sharpness", "score"):
            shown[key] = _compact(row.get(key))
        # Cells are data, not rich markup: "[redacted]" must print as written.
        table.add_row(*(escape(shown.get(c) or "") for c in columns))
    Console(width=max(120, _terminal_width())).print(table)


def _compact(value: str | None) -> str:
    try:
        return f"{float(value):.3g}" if value else ""
    except ValueError:
        return value or ""


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((160, 40)).columns


__all__ = ["ScoreRequest", "run_score"]
