"""`mediqa score` locally vs `--ray` on the same archive, and Ray with 1 vs 2 worker nodes.

Each run is the real command in its own process, writing a real report. Its log lines carry
the clock: from the process start to "model ... on" (local) or "Ray: ... model actor(s)" (Ray)
is start-up (imports, cluster connection, node checks, model actors loading the weights);
from there to the summary line is scoring. Per-scan time is scoring / scans, and the Ray
overhead per scan is Ray's per-scan time minus the local one. The clusters are real node
processes on 127.0.0.1 (`mediqa_cli.ray_cluster.LocalRayCluster`, one CPU per node), so on a
machine with few cores two nodes share the same cores: read the scaling with the core count
printed at the top. Both clusters are up for the whole benchmark and the three settings take
turns (local, 1 node, 2 nodes; again), so a change in the machine's load hits each of them;
the table gives each setting's median and the load average is printed before and after.
Every process runs torch on one thread (OMP_NUM_THREADS=1, set before the clusters start, so
their workers inherit it; the CPU actors of 1-CPU nodes use one thread anyway): on a shared
2-core machine, torch's default of one thread per core stalls the local run's model behind the
decoding worker and other jobs, and the comparison would measure that instead of Ray.

Usage: python benchmarks/ray_scaling.py [--copies 4] [--repeats 3] [--workers N]
(--copies: how many copies of the demo archive; the local run uses --workers, default one per
two cores as `mediqa score` does.)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mediqa_cli.demo import build_demo_tree
from mediqa_cli.ray_cluster import LocalRayCluster
from mediqa_cli.runner import default_workers

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) mediqa \w+ (.*)$")
READY = ("Ray: ", "model ")  # the line after which scoring starts
SUMMARY = re.compile(r"(\d+) scan\(s\), (\d+) ok")


@dataclass
class Timing:
    total: float
    startup: float
    scoring: float
    scans: int

    @property
    def per_scan(self) -> float:
        return self.scoring / max(1, self.scans)


def score_once(archive: Path, out: Path, extra: list[str]) -> Timing:
    """One `mediqa score` process; times read from its own log lines."""
    out.unlink(missing_ok=True)
    started_wall = datetime.now()
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mediqa_cli", "score", str(archive),
                             "--out", str(out), *extra], capture_output=True, text=True)
    total = time.perf_counter() - began
    if result.returncode not in (0, 1):
        raise RuntimeError(f"mediqa score {' '.join(extra)} exited {result.returncode}:\n"
                           f"{result.stderr[-3000:]}")
    ready = done = None
    scans = 0
    for line in result.stderr.splitlines():
        match = STAMP.match(line)
        if not match:
            continue
        when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
        message = match.group(2)
        if ready is None and message.startswith(READY):
            ready = when
        summary = SUMMARY.search(message)
        if summary:
            done, scans = when, int(summary.group(1))
    if ready is None or done is None:
        raise RuntimeError(f"no start or summary line in the log:\n{result.stderr[-3000:]}")
    startup = (ready - started_wall).total_seconds()
    return Timing(total, startup, (done - ready).total_seconds(), scans)


def median_timing(runs: list[Timing]) -> Timing:
    return Timing(statistics.median(r.total for r in runs),
                  statistics.median(r.startup for r in runs),
                  statistics.median(r.scoring for r in runs), runs[0].scans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of the demo archive")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setting (median)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="decoding processes of the local run")
    args = parser.parse_args()

    os.environ["OMP_NUM_THREADS"] = "1"
    work = Path(tempfile.mkdtemp(prefix="mq-bench-"))
    try:
        archive = work / "archive"
        build_demo_tree(work / "demo")
        for index in range(args.copies):
            shutil.copytree(work / "demo", archive / f"copy{index}")
        print(f"archive: demo x{args.copies}; {os.cpu_count()} cores; "
              f"load average before: {os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}")
        settings = {f"local (--workers {args.workers})": ["--workers", str(args.workers)]}
        with LocalRayCluster(nodes=1) as one, LocalRayCluster(nodes=2) as two:
            for nodes, cluster in ((1, one), (2, two)):
                settings[f"--ray, {nodes} node(s) x 1 CPU, {nodes} CPU actor(s)"] = [
                    "--ray", cluster.address]
            runs: dict[str, list[Timing]] = {name: [] for name in settings}
            for _ in range(args.repeats):
                for name, extra in settings.items():
                    runs[name].append(score_once(archive, work / "report.csv", extra))
        rows = [(name, median_timing(timings)) for name, timings in runs.items()]
        local = rows[0][1]
        print(f"{local.scans} scans; load average after: {os.getloadavg()[0]:.1f}\n")
        print("| run | total s | start-up s | scoring s | per scan ms | overhead per scan ms "
              "| scoring speed-up |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, timing in rows:
            overhead = (timing.per_scan - local.per_scan) * 1000
            speedup = local.scoring / timing.scoring if timing.scoring else float("nan")
            print(f"| {name} | {timing.total:.1f} | {timing.startup:.1f} | {timing.scoring:.1f} "
                  f"| {timing.per_scan * 1000:.0f} | {overhead:+.0f} | {speedup:.2f}x |")
        print("\nscoring s of each run, in the order run:")
        for name, timings in runs.items():
            print(f"  {name}: " + ", ".join(f"{t.scoring:.1f}" for t in timings))
        one, two = rows[1][1], rows[2][1]
        print(f"\n1 -> 2 nodes: scoring {one.scoring:.1f} s -> {two.scoring:.1f} s "
              f"({one.scoring / two.scoring:.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
