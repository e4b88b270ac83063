"""Streaming scheduler: decode and prepare scans in a worker pool, score them, emit results.

Work flows one way: Scan -> `prepare_scan` (worker: decode, validate, pick slices, IQMs, model
inputs) -> `Scorer.score` (main process: packed model batches) -> `ScanResult`. The engine
schedules and builds no rows: results are made by `mediqa_cli.results`, published by
`mediqa_cli.privacy`, and written by `mediqa_cli.reports`. At most a bounded number
of scans are in flight, and results leave in discovery order, so memory stays flat however large
the archive is. `prepare_scan` takes and returns picklable values, so the same per-scan function
runs as a Ray task under `mediqa score --ray` (`mediqa_cli.distributed`), and `finish_batch` is
the model step there.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mediqa_cli.io.scan import SOURCE_OVERRIDE, Scan, ScanProblem
from mediqa_cli.iqm import compute_iqms
from mediqa_cli.options import ScoreOptions
from mediqa_cli.results import ScanResult, new_result
from mediqa_cli.saliency import SliceSelection, select_slices, thumbnail

log = logging.getLogger("mediqa")

# Slices smaller than this on either side carry too little to assess.
MIN_SIDE = 8
# One slice above this many pixels is refused (a corrupt header or a whole-slide image).
MAX_SLICE_PIXELS = 120_000_000
# At most this many of the salient slices feed the classical IQMs (a median over slices: five
# is stable, and IQMs cost ~20 ms a slice).
IQM_SLICES = 5
# A scan whose decoded slices (float32) fit in this many bytes keeps them from the first pass, so
# its selected slices are not decoded a second time; a larger one re-reads just those.
KEEP_BYTES = 32 * 1024 * 1024
# The command's default pool starts at a run's 32nd scan: below that a worker's start-up costs
# more than it saves (`_DecoderPool`).
POOL_AFTER = 32

class ScanInputError(Exception):
    """Pixel data that cannot be assessed (NaN, constant, too small...): an error row."""


@dataclass
class PreparedScan:
    """What the worker hands back: metadata, checks passed, IQMs and model inputs."""

    result: ScanResult
    slice_indices: list[int] = field(default_factory=list)
    slice_weights: list[float] = field(default_factory=list)
    model_inputs: Any = None
    failed: bool = False

    @property
    def row(self) -> ScanResult:
        """The result (read like a row: `.get(column)`); kept for callers of the old name."""
        return self.result


class Preparer(Protocol):
    """Worker side of a scorer: model inputs from the selected raw slices (picklable)."""

    def prepare(self, scan: Scan, slices: dict[int, np.ndarray], selection: SliceSelection) -> Any:
        """Model inputs for the selected slices, in selection order."""


class Scorer(Protocol):
    """The learned model behind the `score` column (mediqa_cli.scoring.ModelScorer)."""

    version: str
    preparer: Preparer

    def score(self, batch: list[PreparedScan]) -> None:
        """Main side: fill score/grade/physical/prompt fields of each prepared result in place."""


# The engine runs on the options object of the command and the API (`mediqa_cli.options`);
# the training code knows it by this name.
EngineOptions = ScoreOptions


def apply_overrides(scan: Scan, modality: str | None, anatomy: str | None) -> None:
    """--modality/--anatomy win over every hint, and the report says so."""
    if modality:
        scan.modality, scan.modality_source = modality, SOURCE_OVERRIDE
    if anatomy:
        scan.anatomy, scan.anatomy_source = anatomy, SOURCE_OVERRIDE


def prepare_scan(
    scan: Scan, options: ScoreOptions, preparer: Preparer | None
) -> PreparedScan:
    """Decode, validate, pick salient slices and summarise one scan (runs in a worker)."""
    started = time.perf_counter()
    apply_overrides(scan, options.modality, options.anatomy)
    result = new_result(scan, options.key())
    try:
        _check_geometry(scan)
        thumbs, kept = _first_pass(scan, _keeps_all(scan, options.max_slices))
        selection = select_slices(thumbs, scan.modality, options.max_slices)
        indices = [int(i) for i in selection.indices]
        weights = [float(w) for w in selection.weights]
        slices = {i: kept[i] if i in kept else scan.read_slice(i) for i in indices}
        kept.clear()  # the unselected slices are not needed past this point
        _check_finite(slices, scan)
        result.iqms = compute_iqms([slices[i] for i in _spread(indices, IQM_SLICES)],
                                   scan.modality)
        prepared = PreparedScan(result=result, slice_indices=indices, slice_weights=weights)
        if preparer is not None:
            prepared.model_inputs = preparer.prepare(scan, slices, selection)
        result.salient_slices = indices
        result.detail = {
            "slice_index": indices,
            "slice_weight": weights,
            "saliency_all_slices": [round(float(v), 6) for v in selection.scores],
        }
    except Exception as exc:  # noqa: BLE001 - any failure becomes this scan's error row
        result.fail(_error_text(exc))
        prepared = PreparedScan(result=result, failed=True)
    result.read_seconds = round(time.perf_counter() - started, 4)
    return prepared


def _error_text(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (ScanInputError,)) or type(exc).__name__ == "DicomReadError":
        return text
    return f"{type(exc).__name__}: {text}"


def _check_geometry(scan: Scan) -> None:
    n, rows, cols = scan.shape
    if n < 1:
        raise ScanInputError("no slices")
    if rows < MIN_SIDE or cols < MIN_SIDE:
        raise ScanInputError(
            f"image too small ({rows}x{cols} px); need at least {MIN_SIDE} px a side"
        )
    if rows * cols > MAX_SLICE_PIXELS:
        raise ScanInputError(
            f"slice too large ({rows}x{cols} px > {MAX_SLICE_PIXELS} px); tile it first"
        )


def _spread(indices: list[int], k: int) -> list[int]:
    """At most k of the indices, evenly spread (IQMs need a sample, not every salient slice)."""
    if len(indices) <= k:
        return indices
    picks = np.linspace(0, len(indices) - 1, k).round().astype(int)
    return [indices[i] for i in sorted(set(picks.tolist()))]


def _keeps_all(scan: Scan, max_slices: int) -> bool:
    """Keep every slice of the first pass? Yes for short stacks (all are selected anyway) and for
    any stack within KEEP_BYTES, so that nothing is decoded twice."""
    n, rows, cols = scan.shape
    return n <= max_slices or n * rows * cols * max(1, scan.channels) * 4 <= KEEP_BYTES


def _first_pass(scan: Scan, keep: bool) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """Read every slice once: thumbnails for selection, constant-image check; with `keep`, the
    slices themselves too."""
    thumbs: list[np.ndarray] = []
    kept: dict[int, np.ndarray] = {}
    low, high = math.inf, -math.inf
    for index in range(scan.n_slices):
        pixels = scan.read_slice(index)
        if pixels.shape[:2] != scan.shape[1:]:
            raise ScanInputError(
                f"slice {index} is {pixels.shape[:2]}, expected {scan.shape[1:]} (odd geometry)"
            )
        finite = np.isfinite(pixels)
        if finite.all():  # the usual case: no masked copy of the slice for its range
            low, high = min(low, float(pixels.min())), max(high, float(pixels.max()))
        elif finite.any():
            low = min(low, float(pixels[finite].min()))
            high = max(high, float(pixels[finite].max()))
        thumbs.append(thumbnail(pixels))
        if keep:
            kept[index] = pixels
    if not math.isfinite(low):
        raise ScanInputError("no finite pixel values (all NaN/inf)")
    if high - low <= 1e-6 * max(1.0, abs(high)):
        raise ScanInputError(f"constant image (every pixel = {low:g}): nothing to assess")
    return thumbs, kept


def _check_finite(slices: dict[int, np.ndarray], scan: Scan) -> None:
    bad = {i: int(np.size(s) - np.count_nonzero(np.isfinite(s))) for i, s in slices.items()}
    bad = {i: n for i, n in bad.items() if n}
    if bad:
        total = sum(bad.values())
        raise ScanInputError(
            f"{total} non-finite voxel(s) (NaN/inf) in slice(s) {sorted(bad)[:5]} of "
            f"{scan.n_slices}: refusing to score corrupted data"
        )


def run(
    items: Iterable[Scan | ScanProblem],
    options: ScoreOptions,
    scorer: Scorer | None = None,
    reuse: Callable[[Scan | ScanProblem], ScanResult | None] | None = None,
    *,
    warm_start: bool = False,
) -> Iterator[ScanResult]:
    """Rows for every item, in order; decoding overlaps with scoring through a process pool.

    A row leaves as soon as its scan is scored, so the caller can journal it: scans are batched
    for the model only while more are ready (never waiting on a decoder to fill a batch). On
    Ctrl-C the scans already decoded are scored and their rows given out before the interrupt
    goes on (a second Ctrl-C stops at once). With `warm_start` (the command's default pool),
    the pool starts only once the run has reached `POOL_AFTER` scans, and until its workers
    are up scans are prepared in this process (`_DecoderPool`).
    """
    workers = options.workers or 0  # None (the API's default): decode in this process
    start_after = POOL_AFTER if warm_start else 0
    pool: _DecoderPool | None = None
    in_flight: deque[tuple[str, Any]] = deque()
    limit = max(2, 2 * workers + 1)
    pending: list[PreparedScan] = []
    completed = False
    try:
        try:
            for seen, item in enumerate(items):
                if pool is None and workers > 0 and seen >= start_after:
                    pool = _DecoderPool(workers, warm_start)
                executor = pool.executor if pool is not None and pool.takes_work() else None
                in_flight.append(_submit(item, options, scorer, reuse, executor))
                while len(in_flight) > limit:
                    yield from _drain_one(in_flight, pending, scorer, options)
            while in_flight:
                yield from _drain_one(in_flight, pending, scorer, options)
        except KeyboardInterrupt:
            ready = pending + _salvage(in_flight)  # before the pool stops: decoded scans stay
            if pool is not None:
                pool.close(finished=False)
                pool = None
            yield from _flush(ready, scorer)
            raise
        yield from _flush(pending, scorer)
        completed = True
    finally:
        if pool is not None:
            pool.close(finished=completed)


class _DecoderPool:
    """The decoding processes of one run, and the model's share of the cores beside them.

    Why the thread count: torch's intra-op threads spin while they wait, so a model using every
    core beside a busy decoder burns CPU and slows both. With the model held to the cores the
    decoders leave (at least one; torch's setting is process-wide, so an API caller's own torch
    work shares it while the run lasts), a 250-scan archive on 2 cores took 29.7 s against
    38.2 s in one process, the same rows (benchmarks/RESULTS.md, "A decoder beside the model").

    Why `warm_start`: a spawned worker imports the whole stack first (~2.5 s of CPU, what
    preparing some 30 scans costs here), and on two cores that start-up slows the scans
    prepared beside it: the 15-scan demo took 2.3 s with a pool against 1.8 s without. So the
    command's pool starts only at a run's `POOL_AFTER`th scan, and takes scans only once a
    no-op job of each worker has come back; until then they are prepared here, so a small run never
    waits for a worker and a large one hands the workers its decoding.
    """

    def __init__(self, workers: int, warm_start: bool) -> None:
        import multiprocessing

        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(os.getpid(),),
        )
        # One no-op job per worker: the pool spawns a process per job while none is idle, so
        # every worker has imported the stack before the first scan goes to the pool.
        self._warming: list[Future] | None = (
            [self.executor.submit(_warm_up) for _ in range(workers)] if warm_start else None)
        self._failed = False
        self._threads = _hold_model_threads(max(1, (os.cpu_count() or 1) - workers))

    def takes_work(self) -> bool:
        """Has the pool started (or was it asked to take scans at once)? A pool whose first
        jobs failed takes none: the run goes on in this process, the model's threads given
        back."""
        if self._warming is None:
            return True
        if self._failed or not all(job.done() for job in self._warming):
            return False
        failure = next((e for e in map(Future.exception, self._warming) if e is not None), None)
        if failure is not None:
            log.warning("decoding workers did not start (%s); scans are prepared in the main "
                        "process", failure)
            self._failed = True
            self._restore_threads()
            return False
        self._warming = None
        return True

    def close(self, finished: bool) -> None:
        """Stop the workers (a pool still starting is not waited for) and give the model back
        the threads it had."""
        _stop_pool(self.executor, finished=finished and self.takes_work())
        self._restore_threads()

    def _restore_threads(self) -> None:
        if self._threads is not None:
            _hold_model_threads(self._threads)
            self._threads = None


def _warm_up() -> int:
    """The pool's first job: by the time it returns, the worker has imported what
    `prepare_scan` and the readers need (unpickling it imported this module)."""
    import mediqa_cli.io  # noqa: F401 - the readers
    import mediqa_cli.scoring  # noqa: F401 - the preparer's class

    return os.getpid()


def _hold_model_threads(threads: int) -> int | None:
    """Set torch's intra-op threads in this process, if torch is loaded (a run without a model
    needs none); return the count it had, to restore (None: torch was not loaded)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    return before


def _stop_pool(executor: ProcessPoolExecutor, finished: bool) -> None:
    """Stop the decoders; return only once the pool's manager thread has ended.

    After a complete run the workers are idle and leave at once. After an interrupt, a closed
    output or an error, running decodes are not waited for: the workers are terminated. Waiting
    for the manager thread matters: if the interpreter exits while that thread still closes its
    wake-up pipe, CPython's pool exit hook writes to it and prints "Exception ignored ... Bad
    file descriptor" (its wake-up pipe has no lock on 3.11; CPython gh-125451 added one to
    the 3.12 and 3.13 branches).
    """
    if finished:
        executor.shutdown(wait=True)
        return
    manager = getattr(executor, "_executor_manager_thread", None)
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    if manager is not None:
        manager.join(timeout=30)


def _worker_init(parent: int | None = None) -> None:
    """Workers decode; one thread each keeps them from fighting the model for cores.

    Spawned workers do not inherit the CLI's logging set-up: silence pydicom's decoder
    tracebacks and header warnings there too (each failure is reported in its row).
    """
    import logging
    import signal
    import warnings

    # Ctrl-C is the parent's to handle (it scores what is decoded and exits); a worker that
    # also caught it would print its own traceback. Workers end with the parent, even on kill -9.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="pydicom")
    warnings.filterwarnings("ignore", module="nibabel")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _die_with_parent(parent: int | None) -> None:
    """Linux: SIGTERM this process when its parent dies (prctl PR_SET_PDEATHSIG), and exit now
    if the parent already died while this worker was still starting (importing torch)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _submit(
    item: Scan | ScanProblem,
    options: ScoreOptions,
    scorer: Scorer | None,
    reuse: Callable[[Scan | ScanProblem], ScanResult | None] | None,
    executor: Executor | None,
) -> tuple[str, Any]:
    if reuse is not None:
        previous = reuse(item)
        if previous is not None:
            return ("row", previous)
    if isinstance(item, ScanProblem):
        return ("row", new_result(item, options.key()))
    preparer = scorer.preparer if scorer is not None else None
    if executor is None:
        return ("prepared", prepare_scan(item, options, preparer))
    future = executor.submit(prepare_scan, item, options, preparer)
    return ("future", (future, new_result(item, options.key())))


def _drain_one(
    in_flight: deque[tuple[str, Any]],
    pending: list[PreparedScan],
    scorer: Scorer | None,
    options: ScoreOptions,
) -> Iterator[ScanResult]:
    """Take the oldest item; rows go out in order, model batches fill up to batch_scans."""
    kind, value = in_flight.popleft()
    if kind == "future":
        value = _result(*value)
        kind = "prepared"
    if kind == "row":
        yield from _flush(pending, scorer)
        yield value
        return
    prepared: PreparedScan = value
    pending.append(prepared)
    if len(pending) >= options.batch_scans or not in_flight or not _ready(in_flight[0]):
        yield from _flush(pending, scorer)


def _salvage(in_flight: deque[tuple[str, Any]]) -> list[PreparedScan]:
    """In-flight scans already decoded (on an interrupt: score those, drop the rest)."""
    ready: list[PreparedScan] = []
    for kind, value in in_flight:
        if kind == "prepared":
            ready.append(value)
        elif kind == "future" and value[0].done() and not value[0].cancelled():
            ready.append(_result(*value))
        elif kind == "row":
            ready.append(PreparedScan(result=value, failed=True))
    in_flight.clear()
    return ready


def _ready(entry: tuple[str, Any]) -> bool:
    """Is the next item available without waiting on a decoder?"""
    kind, value = entry
    return kind != "future" or value[0].done()


def _result(future: Future, result: ScanResult) -> PreparedScan:
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a crashed worker must not end the run
        result.fail(f"worker failed: {type(exc).__name__}: {exc}")
        return PreparedScan(result=result, failed=True)


def finish_batch(batch: list[PreparedScan], scorer: Scorer | None) -> list[ScanResult]:
    """Score a batch of prepared scans (failed ones pass through) and return their results in
    order: the model step of `run`, also run by the model actors of `mediqa_cli.distributed`."""
    return list(_flush(list(batch), scorer))


def _flush(pending: list[PreparedScan], scorer: Scorer | None) -> Iterator[ScanResult]:
    if not pending:
        return
    batch = [p for p in pending if not p.failed]
    if scorer is not None and batch:
        started = time.perf_counter()
        try:
            scorer.score(batch)
        except Exception as exc:  # noqa: BLE001 - a model failure fails these scans only
            for prepared in batch:
                prepared.result.fail(f"model failed: {exc}")
        per_scan = (time.perf_counter() - started) / len(batch)
        for prepared in batch:
            if prepared.result.score_seconds is None:
                prepared.result.score_seconds = round(per_scan, 4)
    for prepared in pending:
        yield prepared.result
    pending.clear()
