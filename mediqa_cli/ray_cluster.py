"""A throwaway Ray cluster of real node processes on this machine, for tests and benchmarks.

`LocalRayCluster(nodes=2)` runs `ray start --head` and `ray start --address` exactly as
docs/ray.md tells an operator to, on 127.0.0.1 with small CPU counts, and stops exactly the
processes it started: each node runs `ray start --block` in a session of its own, and stopping
ends that session's processes (Ray's workers included: they get process groups of their own,
not sessions), never with `ray stop`, which would end every Ray process of the machine,
another user's cluster included. Nothing here imports Ray: the `ray` command does
the work, as it would for an operator.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

STARTED = "Ray runtime started"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ray_command() -> str:
    """The `ray` executable next to this Python (a virtual environment's), else on PATH."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


class LocalRayCluster:
    """A head and `nodes - 1` worker node processes on 127.0.0.1; a context manager.

    `address` is what `mediqa score --ray` takes. `cpus_per_node` is each node's CPU count
    (decode tasks at a time); `object_store_mb` keeps each node's shared memory small.
    """

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 100,
                 start_timeout_s: float = 240.0) -> None:
        self.nodes, self.cpus, self.store_mb = nodes, cpus_per_node, object_store_mb
        self.timeout = start_timeout_s
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short: Ray's socket paths live under it and must fit in 107 bytes.
        self.temp = Path(tempfile.mkdtemp(prefix="mq-ray-", dir="/tmp"))
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        common = ["--num-cpus", str(self.cpus), "--node-ip-address", "127.0.0.1",
                  "--object-store-memory", str(self.store_mb * 1_000_000),
                  "--disable-usage-stats", "--block"]
        head = ["--head", "--port", str(self.port), "--include-dashboard", "false",
                "--temp-dir", str(self.temp)]
        self._start_node("head", head + common)
        for index in range(1, self.nodes):
            self._start_node(f"node{index}", ["--address", self.address] + common)

    def _start_node(self, name: str, args: list[str]) -> None:
        log_path = self.temp / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([ray_command(), "start", *args], stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=self.temp, start_new_session=True, env=self._env())
        self.processes.append(process)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            if STARTED in text:
                return
            if process.poll() is not None:
                raise RuntimeError(f"ray start ({name}) exited {process.returncode}:\n"
                                   f"{text[-3000:]}")
            time.sleep(0.5)
        raise RuntimeError(f"ray start ({name}) did not start in {self.timeout:.0f} s")

    @staticmethod
    def _env() -> dict[str, str]:
        """Ray runs its workers 15 nicer than the raylet by default; here they keep the niceness
        of whoever started the cluster, as a local run's decoding processes do, so a test or a
        benchmark on a shared machine compares like with like."""
        return {**os.environ, "RAY_worker_niceness": "0"}

    def worker_pids(self, title: str = "") -> list[int]:
        """Processes of this cluster whose title starts with `title` (e.g. 'ray::ModelActor')."""
        return [pid for pid, command in _session_processes({p.pid for p in self.processes})
                if command.startswith(title)]

    def stop(self, grace_s: float = 3.0) -> None:
        """End every process of this cluster (and only those), then remove its temp folder."""
        sessions = {p.pid for p in self.processes}
        for process in reversed(self.processes):
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(process.pid, signal.SIGKILL)  # stragglers of the group
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        for pid, _ in _session_processes(sessions):  # workers outlive a raylet for a moment
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.processes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)


def _session_processes(sessions: set[int]) -> list[tuple[int, str]]:
    """(pid, title) of every live process in one of these sessions."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pid = int(entry.name)
            if os.getsid(pid) not in sessions:
                continue
            command = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ProcessLookupError):
            continue
        found.append((pid, command.decode(errors="replace")))
    return sorted(found)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


__all__ = ["LocalRayCluster", "ray_command"]
