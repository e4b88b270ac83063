"""Decoding workers live and die with their run: a consumer that stops early (a closed pipe)
leaves no pool thread or worker behind, and `kill -9` of `mediqa score` leaves no worker or
resource tracker; `--resume` then gives the rows of a clean run."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mediqa_cli.engine import run
from mediqa_cli.io import discover
from mediqa_cli.options import ScoreOptions
from mediqa_cli.reports import journal_path
from tests.packaged import packaged_dicom

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
# Columns that differ between two runs of the same scans by design.
TIMING = ("scored_at", "read_seconds", "score_seconds")
# Model outputs: packing scans into other batches moves them in the last digits.
MODEL = ("score", "worst_slice_score")


def _archive(root: Path, copies: int) -> Path:
    """`copies` scans of each of three real DICOM files, one scan per folder."""
    for n in range(copies):
        for name in ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm"):
            folder = root / f"{n:02d}_{name.split('_')[0].lower()}"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(packaged_dicom(name), folder / name)
    return root


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if type(t).__name__ == "_ExecutorManagerThread"]


def test_a_consumer_that_stops_early_leaves_no_pool_thread_or_worker(tmp_path: Path):
    """`--out - | head -1`: the run's generator is closed while workers decode. Returning
    before the pool's manager thread has ended let the interpreter's exit race it ("Exception
    ignored ... Bad file descriptor", about one run in thirty)."""
    import multiprocessing

    archive = _archive(tmp_path / "scans", copies=3)
    results = run(discover([str(archive)]), ScoreOptions(workers=2), scorer=None)
    first = next(results)
    assert first.status == "ok"
    results.close()
    assert _pool_threads() == []
    assert multiprocessing.active_children() == []


def _children(parent: int) -> dict[int, str]:
    """Child pid -> start time (pids are reused; the pair is not)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            state = _stat(int(entry))
            if state is not None and state[1] == parent:
                found[int(entry)] = state[2]
    return found


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) from /proc/PID/stat, None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), fields[19]


def _alive(pid: int, started: str) -> bool:
    state = _stat(pid)
    return state is not None and state[2] == started and state[0] not in ("Z", "X")


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["scan_id"]: row for row in csv.DictReader(handle)}


def _journaled(path: Path) -> int:
    if not path.exists():
        return 0
    count = 0
    for line in path.read_text().splitlines():
        try:
            json.loads(line)
        except ValueError:
            continue  # a torn last line
        count += 1
    return count


def _mediqa(*args: str) -> list[str]:
    return [sys.executable, "-m", "mediqa_cli", "score", *args, "-q"]


@linux_only
@pytest.mark.slow
def test_kill_9_leaves_no_worker_and_resume_equals_a_clean_run(tmp_path: Path):
    archive = _archive(tmp_path / "scans", copies=10)
    out = tmp_path / "killed.csv"
    journal = journal_path(out)
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(_mediqa(str(archive), "--out", str(out), "--workers", "2"),
                                   stdout=subprocess.DEVNULL, stderr=log)
    children: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 600
        while _journaled(journal) < 1 and process.poll() is None:
            assert time.monotonic() < deadline, "no row journaled in 10 minutes"
            children.update(_children(process.pid))
            time.sleep(0.01)
        children.update(_children(process.pid))
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        kept = _journaled(journal)
        assert 1 <= kept < 30
        assert len(children) >= 3, children  # two workers and the resource tracker
        deadline = time.monotonic() + 60
        while any(_alive(pid, start) for pid, start in children.items()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        survivors = [pid for pid, start in children.items() if _alive(pid, start)]
        assert survivors == [], f"still running after kill -9 of their parent: {survivors}"
    finally:
        if process.poll() is None:
            process.kill()
        for pid, start in children.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)

    resumed = subprocess.run(_mediqa(str(archive), "--out", str(out), "--workers", "2",
                                     "--resume"), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    clean = tmp_path / "clean.csv"
    done = subprocess.run(_mediqa(str(archive), "--out", str(clean), "--workers", "0"),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    after, expected = _rows(out), _rows(clean)
    assert len(after) == len(expected) == 30 and after.keys() == expected.keys()
    for scan_id, row in expected.items():
        for column, value in row.items():
            if column in TIMING:
                continue
            if column in MODEL or column.startswith("phys_"):
                assert float(after[scan_id][column]) == pytest.approx(float(value), abs=0.05)
            else:
                assert after[scan_id][column] == value, (scan_id, column)
    assert not journal.exists()


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 1), (3, 1), (4, 2), (8, 4), (64, 4)])
def test_default_workers_one_per_two_cores(cores: int, workers: int):
    from mediqa_cli.runner import default_workers

    assert default_workers(cores) == workers


def _values(results) -> list[dict]:
    return [{k: v for k, v in r.column_values().items() if k not in TIMING} for r in results]


def test_the_commands_pool_starts_only_once_a_run_reaches_pool_after(tmp_path: Path, monkeypatch):
    """`warm_start` (the command's default workers): a run shorter than POOL_AFTER scans never
    spawns a worker (its start-up would cost more than it saves); a longer one starts the pool
    at that scan, hands it scans once its worker is up, gives the rows of a run in one process
    and gives the model its threads back."""
    import multiprocessing

    import torch

    from mediqa_cli import engine

    monkeypatch.setattr(engine, "POOL_AFTER", 4)
    pools: list = []
    real_pool = engine._DecoderPool
    monkeypatch.setattr(engine, "_DecoderPool",
                        lambda *args: pools.append(real_pool(*args)) or pools[-1])
    sent_to_pool: list[bool] = []
    real_submit = engine._submit
    monkeypatch.setattr(engine, "_submit", lambda item, options, scorer, reuse, executor: (
        sent_to_pool.append(executor is not None)
        or real_submit(item, options, scorer, reuse, executor)))
    threads = torch.get_num_threads()

    short = _archive(tmp_path / "short", copies=1)  # 3 scans
    rows = list(run(discover([str(short)]), ScoreOptions(workers=1), None, warm_start=True))
    assert [r.status for r in rows] == ["ok"] * 3
    assert pools == [] and sent_to_pool == [False] * 3

    def waiting(items):
        """The scans, pausing after the fifth until the pool's worker is up."""
        for n, item in enumerate(items):
            if n == 5:
                deadline = time.monotonic() + 300
                while not pools[0].takes_work() and time.monotonic() < deadline:
                    time.sleep(0.1)
            yield item

    longer = _archive(tmp_path / "longer", copies=3)  # 9 scans
    rows = list(run(waiting(discover([str(longer)])), ScoreOptions(workers=1), None,
                    warm_start=True))
    assert len(pools) == 1
    assert sent_to_pool[3:] == [False] * 5 + [True] * 4  # in this process until the worker is up
    assert _values(rows) == _values(run(discover([str(longer)]), ScoreOptions(workers=0)))
    assert torch.get_num_threads() == threads
    assert _pool_threads() == []
    assert multiprocessing.active_children() == []


def test_a_warm_pool_takes_scans_once_up_and_gives_the_model_its_threads_back():
    """Beside a pool the model keeps the cores the decoders leave (at least one): torch's
    waiting threads spin, and a model on every core beside a busy decoder slows both."""
    import torch

    from mediqa_cli.engine import _DecoderPool

    before = torch.get_num_threads()
    pool = _DecoderPool(1, warm_start=True)
    try:
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) - 1)
        for job in pool._warming:
            job.result(timeout=300)
        assert pool.takes_work()
    finally:
        pool.close(finished=True)
    assert torch.get_num_threads() == before


def test_a_pool_whose_workers_fail_to_start_leaves_the_scans_to_this_process(caplog):
    """A first job that fails (a worker that cannot import) hands no scan to the pool: the run
    goes on in this process, with one warning."""
    import logging
    from concurrent.futures import Future

    import torch

    from mediqa_cli.engine import _DecoderPool

    before = torch.get_num_threads()
    pool = _DecoderPool(1, warm_start=False)  # no job submitted: no worker spawned
    failed: Future = Future()
    failed.set_exception(RuntimeError("no module named pydicom"))
    pool._warming = [failed]
    try:
        with caplog.at_level(logging.WARNING, logger="mediqa"):
            assert not pool.takes_work()
            assert not pool.takes_work()
        warnings = [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()]
        assert len(warnings) == 1 and "no module named pydicom" in warnings[0]
        assert torch.get_num_threads() == before  # the model has its threads back at once
    finally:
        pool.close(finished=True)
    assert torch.get_num_threads() == before
