"""The same per-scan work as the local engine, spread over a Ray cluster (`mediqa score --ray`).

Why Ray core and this shape (docs/ray.md): discovery is a lazy walk on the driver, so work is
fed to the cluster as the walk goes, never listed up front; decoding is CPU work that any node
can do from the shared file system; the model is worth loading once per GPU, not per task.

- The driver (this process) walks the inputs, asks `--resume` which rows stand, and gets every
  result back in discovery order for the runner's sink, which writes the report, the journal
  and the history exactly as in a local run.
- `engine.prepare_scan` (decode, checks, salient slices, IQMs, model inputs) runs as a Ray task
  with one CPU. A task lost with its worker or node is rerun (`task_retries`); a scan whose
  decode fails is an error row made by `prepare_scan` itself, as locally.
- The network runs in model actors: one per GPU, else one CPU actor per node. Each loads the
  weights the driver found, put once in the object store (every node fetches the same bytes
  once, whatever is installed there) and verified by the actor's own load. A lost actor is
  restarted (`actor_restarts`) and its batch retried.
- Decoded scans go from the decoding worker to an actor as object references, never through
  the driver, in batches of the scans ready at the time (at most `batch_scans`), as locally.
- Back-pressure: at most `in_flight` scans sit between the walk and the sink, and each actor
  holds at most `batches_per_actor` batches, so a million-file tree never sits in the object
  store.

Ray is imported only inside this module's functions, and this module only under `--ray`: local
runs never import Ray (`tests/test_distributed.py`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mediqa_cli

if TYPE_CHECKING:  # the pipeline's modules load torch: imported where used, so the small
    # actors and probes of this module start fast
    from mediqa_cli.engine import EngineOptions, PreparedScan
    from mediqa_cli.io.scan import Scan, ScanProblem
    from mediqa_cli.results import ScanResult

log = logging.getLogger("mediqa")

# How long the driver waits, after Ctrl-C, for batches already handed to an actor.
INTERRUPT_GRACE_S = 10.0
# How long a node may take to start a worker and import MedIQA for the start-up check.
PROBE_TIMEOUT_S = 180.0
# A batch whose actor call fails for a reason other than its own decode is retried this often
# (on top of Ray's own retries) before its scans become error rows.
BATCH_ATTEMPTS = 3


class ClusterError(RuntimeError):
    """The cluster cannot score: unreachable, a node without the same MedIQA, no model actor."""


class RayMissing(ClusterError):
    """`--ray` without Ray installed (a usage error: install the `ray` extra)."""


@dataclass
class ClusterOptions:
    """How a run uses the cluster; the CLI sets address, device, backend, views, precision."""

    address: str = "auto"  # "auto": the cluster this machine joined (ray start), or HOST:PORT
    device: str = "auto"  # auto: GPU actors where the cluster has GPUs, else CPU actors
    backend: str = "eager"
    views: int = 1
    precision: str = "auto"  # resolved by each actor on its own node's CPU
    actors: int | None = None  # model actors; default one per GPU, else one per node
    actor_threads: int | None = None  # torch threads of an actor; default: a CPU actor half
    # its node's CPUs (on CPU the model costs about what decoding does), a GPU actor 2
    in_flight: int | None = None  # scans between the walk and the sink; default from the size
    batches_per_actor: int = 2  # one being scored, one waiting: the actor never idles on I/O
    task_retries: int = 3  # a decode task lost with its worker or node is rerun
    actor_restarts: int = 3  # a lost model actor is restarted, its calls retried


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayMissing("--ray needs Ray on this machine and every node: "
                         "pip install 'mediqa[ray]'") from exc
    return ray


# -- work that runs on the cluster -----------------------------------------------------------

_SET_UP: set[int] = set()


def _worker_setup(threads: int) -> None:
    """Once per worker process: quiet decoder logs (each failure is in its row) and keep torch
    to `threads` threads, so a decoding task uses the one CPU it was given."""
    if os.getpid() in _SET_UP:
        return
    import warnings

    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="pydicom")
    warnings.filterwarnings("ignore", module="nibabel")
    import torch

    torch.set_num_threads(max(1, threads))
    _SET_UP.add(os.getpid())


def node_facts() -> dict[str, str]:
    """What the start-up check compares across nodes (runs on each node)."""
    import platform

    return {"mediqa": mediqa_cli.__version__, "python": platform.python_version(),
            "host": platform.node()}


def prepare_on_node(scan: Scan, options: EngineOptions, preparer: Any, cwd: str) -> PreparedScan:
    """`engine.prepare_scan` on a cluster worker. Relative input paths mean the driver's folder:
    the worker moves there when its node has it (a shared file system mounted at one path)."""
    from mediqa_cli.engine import prepare_scan

    _worker_setup(1)
    if cwd and os.getcwd() != cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    return prepare_scan(scan, options, preparer)


class WeightsStore:
    """The weights' files for one run, held on the driver's node.

    Model actors are given this actor's name, not the files: a Ray actor restarted after a
    crash cannot count on objects passed to its constructor (ray-project/ray#53727), while it
    can always ask the store again. The store answers with one object reference, so each node
    fetches the bytes once, however many actors it runs.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        import ray

        self._files = ray.put(files)

    def files(self) -> list[Any]:
        return [self._files]


class ModelActor:
    """One network, on the GPU Ray gave this actor or on CPU threads: scores batches."""

    def __init__(self, store: str, device: str, backend: str, views: int, precision: str,
                 threads: int) -> None:
        import ray

        from mediqa_cli.scoring import load_scorer

        _worker_setup(threads)
        (ref,) = ray.get(ray.get_actor(store).files.remote())
        weights: dict[str, bytes] = ray.get(ref)
        folder = tempfile.mkdtemp(prefix="mediqa-weights-")
        try:
            write_payload(weights, Path(folder))
            self.scorer = load_scorer(Path(folder), device, backend, views, precision=precision)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        return {"version": self.scorer.version, "preparer": self.scorer.preparer,
                "device": str(self.scorer.device), "mediqa": mediqa_cli.__version__,
                "pid": os.getpid()}

    def score(self, *batch: PreparedScan) -> list[ScanResult]:
        from mediqa_cli.engine import finish_batch

        return finish_batch(list(batch), self.scorer)


def write_payload(files: dict[str, bytes], folder: Path) -> None:
    """The driver's weights files as a weights folder again (names may hold
    `specialists/<MODALITY>/`)."""
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _weights_payload() -> dict[str, bytes] | None:
    """The installed weights' files, read once on the driver (None: no weights installed)."""
    from mediqa_cli.calibration import CALIBRATION_FILE
    from mediqa_cli.domain import DOMAIN_FILE
    from mediqa_cli.model.weights import (
        CARD_FILE,
        CONFIG_FILE,
        WEIGHTS_FILE,
        find_installed_weights,
        specialist_folders,
    )
    from mediqa_cli.physics_head import PHYSICS_HEAD_FILE

    found = find_installed_weights()
    if found is None:
        return None
    names = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE,  # then the optional ones
             DOMAIN_FILE, CALIBRATION_FILE, PHYSICS_HEAD_FILE)
    files = {name: (found / name).read_bytes() for name in names if (found / name).is_file()}
    for folder in specialist_folders(found):
        for name in (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE):  # load_weights refuses a missing one
            if (folder / name).is_file():
                files[str((folder / name).relative_to(found))] = (folder / name).read_bytes()
    return files


# -- the driver ------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One discovered item on its way to the sink, in discovery order."""

    fallback: ScanResult  # the row if the scan is lost for good (identity, no pixels)
    result: ScanResult | None = None
    decode: Any = None  # ObjectRef of the PreparedScan
    attempts: int = 0


@dataclass
class _Batch:
    actor: int
    slots: list[_Slot] = field(default_factory=list)


class RayEngine:
    """A connection to a Ray cluster with model actors running; `run` scores items there.

    `version` and `preparer` are the actors' (None without installed weights), as the local
    scorer's are: the runner compares `version` with earlier rows for `--resume`.
    """

    def __init__(self, options: ClusterOptions) -> None:
        self.options = options
        self.version: str | None = None
        self.preparer: Any = None
        self.nodes: list[dict[str, Any]] = []
        self.actor_facts: list[dict[str, Any]] = []
        self._actors: list[Any] = []
        self._alive: list[bool] = []
        self._store: Any = None
        self._device = "cpu"
        ray = self._ray = _import_ray()
        _check_reachable(options.address)
        try:
            ray.init(address=options.address, logging_level=logging.WARNING,
                     log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Ray cluster at {options.address!r}: "
                               f"{_first_line(exc)}") from exc
        try:
            probes = self._probe_nodes()
            self._start_actors()  # loads while the probes run
            self._check_nodes(probes)
            self._check_actors()
        except Exception as exc:
            self.close()
            if isinstance(exc, ClusterError):
                raise
            raise ClusterError(f"cannot start on the Ray cluster: {type(exc).__name__}: "
                               f"{_first_line(exc)}") from exc
        except BaseException:
            self.close()
            raise

    # -- start-up ----------------------------------------------------------------------------
    def _probe_nodes(self) -> list[Any]:
        """Every node runs one small task: the run fails at the start, with the node named,
        rather than as rows of errors when a node lacks MedIQA or runs another version of it."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.nodes = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(node_facts)
        return [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            node["NodeID"], soft=False)).remote() for node in self.nodes]

    def _check_nodes(self, probes: list[Any]) -> None:
        try:
            facts = self._ray.get(probes, timeout=PROBE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a node that cannot import MedIQA, a timeout
            raise ClusterError(f"a cluster node cannot run MedIQA ({_first_line(exc)}); "
                               "install the same mediqa[ray] on every node") from exc
        mine = mediqa_cli.__version__
        odd = [f"{f['host']} has {f['mediqa']}" for f in facts if f["mediqa"] != mine]
        if odd:
            raise ClusterError(f"every node needs MedIQA {mine} (the driver's): "
                               + ", ".join(odd))

    def _start_actors(self) -> None:
        ray, options = self._ray, self.options
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if options.device == "cuda" and not gpus:
            raise ClusterError("--device cuda asked for, but the Ray cluster has no GPU")
        use_gpu = gpus > 0 and options.device != "cpu"
        cpu_nodes = [n for n in self.nodes if n.get("Resources", {}).get("CPU", 0) > 0]
        count = options.actors or (gpus if use_gpu else max(1, len(cpu_nodes)))
        weights = _weights_payload()
        if weights is None:
            log.warning("no weights installed: the score column stays empty (classical IQMs "
                        "only)")
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # Actors reserve no CPU slot: a GPU actor's slot is its GPU, and a CPU actor's threads
        # share its node's cores with the decode tasks, as a local run's model shares them with
        # its decoders. CPU actors go one to a node (soft: a lost node's restarts elsewhere).
        actor_class = ray.remote(ModelActor)
        resources = {"num_cpus": 0, "num_gpus": 1 if use_gpu else 0,
                     "max_restarts": options.actor_restarts,
                     "max_task_retries": options.actor_restarts}
        places: list[tuple[Any, int]] = [("SPREAD", options.actor_threads or 2)] * count
        if not use_gpu and cpu_nodes:
            places = []
            for index in range(count):
                node = cpu_nodes[index % len(cpu_nodes)]
                threads = options.actor_threads or max(1, int(node["Resources"]["CPU"]) // 2)
                places.append((NodeAffinitySchedulingStrategy(node["NodeID"], soft=True),
                               threads))
        store_name = f"mediqa-weights-{uuid.uuid4().hex}"
        self._store = ray.remote(WeightsStore).options(
            name=store_name, num_cpus=0, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=True),
        ).remote(weights)
        device = "cuda" if use_gpu else "cpu"
        self._actors = [
            actor_class.options(scheduling_strategy=place, **resources).remote(
                store_name, device, options.backend, options.views, options.precision, threads)
            for place, threads in places
        ]
        self._alive = [True] * count
        self._device = device

    def _check_actors(self) -> None:
        if not self._actors:
            return
        try:
            self.actor_facts = self._ray.get([a.describe.remote() for a in self._actors])
        except Exception as exc:  # noqa: BLE001 - WeightsError, CUDA or backend failures inside
            raise ClusterError(f"the model actors cannot load the model: "
                               f"{_first_line(exc)}") from exc
        versions = {f["version"] for f in self.actor_facts}
        if len(versions) != 1:
            # `--precision auto` resolves on each actor's CPU: nodes with and without native
            # bf16 would score in two arithmetics, which one report must not mix.
            hint = ("; the nodes' CPUs differ in native bf16: pass --precision fp32 (or bf16)"
                    if len({v.replace("+bf16", "") for v in versions}) == 1 else "")
            raise ClusterError(f"model actors disagree on the model: {sorted(versions)}{hint}")
        self.version = versions.pop()
        self.preparer = self.actor_facts[0]["preparer"]
        log.info("Ray: %d node(s), %d model actor(s) on %s, model %s", len(self.nodes),
                 len(self._actors), self._device, self.version)

    def close(self) -> None:
        """Disconnect: the actors and tasks of this run end with it; the cluster stays up."""
        if self._ray.is_initialized():
            self._ray.shutdown()

    # -- the run -----------------------------------------------------------------------------
    def run(
        self,
        items: Iterable[Scan | ScanProblem],
        options: EngineOptions,
        reuse: Callable[[Scan | ScanProblem], ScanResult | None] | None = None,
    ) -> Iterator[ScanResult]:
        """Results for every item in discovery order, as `engine.run` gives them locally.

        On Ctrl-C, batches already with an actor get a few seconds to come back; every row
        finished by then is given out (the journal keeps it) before the interrupt goes on.
        """
        ray = self._ray
        prepare = ray.remote(prepare_on_node).options(num_cpus=1,
                                                      max_retries=self.options.task_retries)
        shared_options = ray.put(options)
        shared_preparer = ray.put(self.preparer)
        cwd = os.getcwd()
        window = self._window(options)
        slots: deque[_Slot] = deque()
        decoding: dict[Any, _Slot] = {}
        ready: deque[_Slot] = deque()
        scoring: dict[Any, _Batch] = {}
        load = [0] * len(self._actors)
        source = iter(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(slots) < window:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    slot = self._slot(item, options, reuse)
                    if slot.result is None:
                        slot.decode = prepare.remote(item, shared_options, shared_preparer, cwd)
                        decoding[slot.decode] = slot
                    slots.append(slot)
                while slots and slots[0].result is not None:
                    yield slots.popleft().result  # type: ignore[misc]
                if not slots:
                    if exhausted:
                        return
                    continue
                self._dispatch(ready, scoring, load, options.batch_scans)
                self._collect(decoding, ready, scoring, load)
        except KeyboardInterrupt:
            yield from self._salvage(slots, scoring)
            raise

    def _window(self, options: EngineOptions) -> int:
        if self.options.in_flight:
            return max(1, self.options.in_flight)
        cpus = int(self._ray.cluster_resources().get("CPU", 1))
        per_actor = self.options.batches_per_actor * options.batch_scans
        return max(8, 2 * cpus + per_actor * len(self._actors))

    def _slot(self, item: Scan | ScanProblem, options: EngineOptions,
              reuse: Callable[[Scan | ScanProblem], ScanResult | None] | None) -> _Slot:
        """As engine._submit: an earlier row that stands, a problem row, or a scan to decode."""
        from mediqa_cli.io.scan import ScanProblem
        from mediqa_cli.results import new_result

        if reuse is not None:
            previous = reuse(item)
            if previous is not None:
                return _Slot(fallback=previous, result=previous)
        row = new_result(item, options.key())
        if isinstance(item, ScanProblem):
            return _Slot(fallback=row, result=row)
        return _Slot(fallback=row)

    def _dispatch(self, ready: deque[_Slot], scoring: dict[Any, _Batch], load: list[int],
                  batch_scans: int) -> None:
        """Decoded scans to the least loaded live actor, as many per batch as are ready."""
        while ready:
            live = [i for i, alive in enumerate(self._alive) if alive]
            if not live:
                raise ClusterError("every model actor was lost (restarts used up); the rows "
                                   "so far are in the journal, rerun with --resume")
            actor = min(live, key=lambda i: load[i])
            if load[actor] >= self.options.batches_per_actor:
                return
            batch = _Batch(actor, [ready.popleft() for _ in range(min(batch_scans, len(ready)))])
            ref = self._actors[actor].score.remote(*(slot.decode for slot in batch.slots))
            scoring[ref] = batch
            load[actor] += 1

    def _collect(self, decoding: dict[Any, _Slot], ready: deque[_Slot],
                 scoring: dict[Any, _Batch], load: list[int]) -> None:
        """Wait for the next finished decode or batch, then take everything finished by then."""
        ray = self._ray
        pending = [*decoding, *scoring]
        if not pending:
            return
        ray.wait(pending, num_returns=1, fetch_local=False)
        done, _ = ray.wait(pending, num_returns=len(pending), timeout=0, fetch_local=False)
        for ref in done:
            if ref in decoding:
                slot = decoding.pop(ref)
                if self._actors:
                    ready.append(slot)
                else:  # no weights: the prepared scan is the row (IQMs only)
                    slot.result = self._unscored(slot)
            else:
                batch = scoring.pop(ref)
                load[batch.actor] -= 1
                try:
                    results = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - actor lost for good, or a lost decode
                    self._recover(batch, exc, ready)
                    continue
                for slot, result in zip(batch.slots, results):
                    slot.result = result

    def _unscored(self, slot: _Slot) -> ScanResult:
        try:
            prepared = self._ray.get(slot.decode)
        except Exception as exc:  # noqa: BLE001 - retries used up: the scan's row says why
            return _lost(slot.fallback, exc)
        from mediqa_cli.engine import finish_batch

        return finish_batch([prepared], None)[0]

    def _recover(self, batch: _Batch, exc: Exception, ready: deque[_Slot]) -> None:
        """A batch came back as an error: a scan whose decode was lost for good becomes an error
        row; the others go back to the queue (another actor, if this one is gone)."""
        from ray.exceptions import ActorDiedError

        ray = self._ray
        if isinstance(exc, ActorDiedError):  # restarts used up (unavailable: still restarting)
            self._alive[batch.actor] = False
            log.warning("model actor %d lost for good: %s", batch.actor, _first_line(exc))
        for slot in reversed(batch.slots):
            try:
                ray.get(slot.decode)
            except Exception as lost:  # noqa: BLE001
                slot.result = _lost(slot.fallback, lost)
                continue
            slot.attempts += 1
            if slot.attempts >= BATCH_ATTEMPTS:
                slot.fallback.fail(f"model failed: {_first_line(exc)}")
                slot.result = slot.fallback
            else:
                ready.appendleft(slot)

    def _salvage(self, slots: deque[_Slot], scoring: dict[Any, _Batch]) -> Iterator[ScanResult]:
        """After Ctrl-C: rows of batches that come back within the grace time, then every row
        already finished (out of order: the journal does not care, --resume finds them)."""
        ray = self._ray
        if scoring:
            refs = list(scoring)
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=INTERRUPT_GRACE_S)
            for ref in done:
                try:
                    results = ray.get(ref)
                except Exception:  # noqa: BLE001 - those scans are rescored on --resume
                    continue
                for slot, result in zip(scoring[ref].slots, results):
                    slot.result = result
        for slot in slots:
            if slot.result is not None:
                yield slot.result


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A HOST:PORT that nothing answers on fails now: Ray itself retries for minutes."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", or a scheme Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc


def _lost(row: ScanResult, exc: BaseException) -> ScanResult:
    row.fail(f"worker failed: {type(exc).__name__}: {_first_line(exc)}")
    return row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def open_cluster(address: str, device: str = "auto", backend: str = "eager",
                 views: int = 1, precision: str = "auto") -> RayEngine:
    """Connect to the cluster at `address` and start the model actors (ClusterError if not)."""
    started = time.perf_counter()
    engine = RayEngine(ClusterOptions(address=address, device=device, backend=backend,
                                      views=views, precision=precision))
    log.debug("Ray cluster ready in %.1f s", time.perf_counter() - started)
    return engine


__all__ = ["ClusterError", "ClusterOptions", "RayEngine", "RayMissing", "open_cluster"]
