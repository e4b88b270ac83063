"""`mediqa score --ray` on a real Ray cluster (a head and a second node process on 127.0.0.1,
one CPU each): the same rows as a local run, no scan lost when a worker process is killed, a
journal that `--resume` finishes after Ctrl-C; and local runs never import Ray."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mediqa_cli.demo import build_demo_tree
from mediqa_cli.reports import journal_path
from mediqa_cli.runner import ScoreRequest, run_score
from tests.packaged import packaged_dicom

# Columns that differ between any two runs (timings, the clock).
UNSTABLE = {"read_seconds", "score_seconds", "scored_at"}
DRIVER_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One site key for every run of the module, so pseudonyms agree."""
    path = tmp_path_factory.mktemp("key") / "site.key"
    path.write_text("0123456789abcdef" * 4 + "\n")
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo archive twice over, plus scans whose decode fails (error rows)."""
    import nibabel as nib

    root = tmp_path_factory.mktemp("ray") / "archive"
    build_demo_tree(root / "a")
    shutil.copytree(root / "a", root / "b")
    bad = root / "bad"
    bad.mkdir()
    shutil.copy(packaged_dicom("MR_truncated.dcm"), bad / "truncated.dcm")
    volume = np.random.default_rng(1).normal(100, 10, (16, 16, 4)).astype(np.float32)
    volume[3, 4, 1] = np.nan
    nib.save(nib.Nifti1Image(volume, np.eye(4)), bad / "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.full((16, 16, 4), 7.0, np.float32), np.eye(4)), bad / "flat.nii")
    return root


@pytest.fixture(scope="module")
def local_rows(archive: Path, key: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("local") / "local.csv"
    # fp32 on both sides: bf16 matmuls round differently with the batch they are packed in, and
    # a Ray actor packs other batches than a local run; the test is about distribution, not that.
    code = run_score(ScoreRequest(paths=[str(archive)], out=str(out), workers=0, quiet=True,
                                  pseudonym_key=str(key), precision="fp32"))
    assert code == 1  # the bad scans
    return _read(out)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    pytest.importorskip("ray")
    from mediqa_cli.ray_cluster import LocalRayCluster

    with LocalRayCluster(nodes=2, cpus_per_node=1) as running:
        yield running


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _assert_same_rows(got: list[dict[str, str]], want: list[dict[str, str]]) -> None:
    """Same rows in the same order; every number equal to 1e-6, every other cell equal."""
    assert [r["scan_id"] for r in got] == [r["scan_id"] for r in want]
    for row, expected in zip(got, want):
        for column, value in expected.items():
            if column in UNSTABLE:
                continue
            other = row[column]
            if other == value:  # also a hex digest that parses as a float ("5e123..." is inf)
                continue
            try:
                a, b = float(value), float(other)
            except ValueError:
                assert other == value, (row["path"], column)
                continue
            assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6, (row["path"], column)


@pytest.fixture
def driver(cluster, archive: Path, key: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts `mediqa score ARCHIVE --ray ADDRESS` in its own process, as a user would; a driver
    still running when the test ends (a failed test) is killed."""
    started: list[subprocess.Popen] = []

    def start(out: Path, *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "mediqa_cli", "score", str(archive), "--out", str(out),
                   "--ray", cluster.address, "--pseudonym-key", str(key), "--precision", "fp32",
                   *extra]
        # SIGINT back to its default: a test run started in the background of a shell without
        # job control (nohup ... &) inherits it ignored, and Ctrl-C would then never arrive.
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, cwd=out.parent,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _journal_rows(out: Path) -> list[dict]:
    path = journal_path(out)
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _wait_for(done: Callable[[], bool], run: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        if run.poll() is not None:
            pytest.fail(f"driver ended early ({run.returncode}): {run.stderr.read()}")
        time.sleep(0.2)
    pytest.fail("timed out waiting for the driver")


@pytest.mark.slow
def test_ray_report_equals_the_local_report(driver, local_rows, tmp_path):
    out = tmp_path / "ray.csv"
    run = driver(out)
    _, err = run.communicate(timeout=DRIVER_TIMEOUT_S)
    assert run.returncode == 1, err  # the bad scans, as locally
    assert "2 node(s)" in err
    rows = _read(out)
    _assert_same_rows(rows, local_rows)
    assert {r["status"] for r in rows} == {"ok", "error"}
    assert not journal_path(out).exists()


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_no_scan(cluster, driver, local_rows, tmp_path):
    out = tmp_path / "killed.csv"
    run = driver(out)
    _wait_for(lambda: len(_journal_rows(out)) >= 1, run, DRIVER_TIMEOUT_S)
    actors = cluster.worker_pids("ray::ModelActor")
    decoders = cluster.worker_pids("ray::prepare_on_node")
    assert actors, "no model actor process found"
    for pid in actors[:1] + decoders[:1]:
        os.kill(pid, signal.SIGKILL)
    scored_before_kill = len(_journal_rows(out))
    _, err = run.communicate(timeout=DRIVER_TIMEOUT_S)
    assert run.returncode == 1, err
    assert scored_before_kill < len(local_rows)  # the kill landed mid-run
    rows = _read(out)
    _assert_same_rows(rows, local_rows)  # every scan once, scored as locally
    assert len({r["scan_id"] for r in rows}) == len(rows)


@pytest.mark.slow
def test_ctrl_c_leaves_a_journal_that_resume_finishes(driver, local_rows, tmp_path):
    # The signal goes out as soon as the driver says the cluster is scoring. Rows reach the
    # journal in discovery order, so on a fast machine the first row can come with the last
    # one: waiting for a journaled row would race the end of the run.
    out = tmp_path / "interrupted.csv"
    run = driver(out)
    seen = []
    for line in run.stderr:
        seen.append(line)
        if "model actor(s)" in line:
            break
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=DRIVER_TIMEOUT_S)
    err = "".join(seen) + err
    assert run.returncode == 130, err
    journaled = _journal_rows(out)  # every line whole JSON
    ids = [r["scan_id"] for r in journaled]
    assert len(ids) == len(set(ids)) < len(local_rows)
    assert set(ids) <= {r["scan_id"] for r in local_rows}
    assert not out.exists()
    resumed = driver(out, "--resume")
    _, err = resumed.communicate(timeout=DRIVER_TIMEOUT_S)
    assert resumed.returncode == 1, err
    if ids:
        assert f"{len(ids)} reused" in err
    _assert_same_rows(_read(out), local_rows)


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_a_local_run_never_imports_ray(tmp_path: Path):
    shutil.copy(packaged_dicom("CT_small.dcm"), tmp_path / "ct.dcm")
    code = (
        "import sys\n"
        "from mediqa_cli.cli import main\n"
        f"sys.argv = ['mediqa', 'score', {str(tmp_path / 'ct.dcm')!r}, '--out', "
        f"{str(tmp_path / 'r.csv')!r}, '--workers', '0', '-q']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as done:\n"
        "    print('exit', done.code)\n"
        "print('ray' in sys.modules, 'mediqa_cli.distributed' in sys.modules)\n"
    )
    result = _run_python(code, tmp_path)
    assert result.stdout.split()[-3:] == ["0", "False", "False"], result.stderr
    assert (tmp_path / "r.csv").exists()


def test_ray_option_without_ray_installed_is_a_usage_error(tmp_path: Path):
    shutil.copy(packaged_dicom("CT_small.dcm"), tmp_path / "ct.dcm")
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if the ray extra were not installed\n"
        "from mediqa_cli.runner import ScoreRequest, run_score\n"
        f"print(run_score(ScoreRequest(paths=[{str(tmp_path / 'ct.dcm')!r}], "
        f"out={str(tmp_path / 'r.csv')!r}, ray='auto')))\n"
    )
    result = _run_python(code, tmp_path)
    assert result.stdout.split()[-1:] == ["2"], result.stderr
    assert "pip install 'mediqa[ray]'" in result.stderr
    assert not (tmp_path / "r.csv").exists()


def test_a_cluster_nobody_answers_at_exits_6_at_once(tmp_path: Path):
    shutil.copy(packaged_dicom("CT_small.dcm"), tmp_path / "ct.dcm")
    code = (
        "from mediqa_cli.runner import ScoreRequest, run_score\n"
        f"print(run_score(ScoreRequest(paths=[{str(tmp_path / 'ct.dcm')!r}], "
        f"out={str(tmp_path / 'r.csv')!r}, ray='127.0.0.1:1')))\n"
    )
    pytest.importorskip("ray")
    result = _run_python(code, tmp_path)
    assert result.stdout.split()[-1:] == ["6"], result.stderr
    assert "cannot reach the Ray cluster at '127.0.0.1:1'" in result.stderr
