"""The progress bar: a total, a rate and an ETA on a terminal; nothing under cron or -q."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import mediqa_cli.runner as runner_module
from mediqa_cli.cli import app
from mediqa_cli.io import discover
from mediqa_cli.progress import ProgressBar, count_files, files_of
from mediqa_cli.results import ScanResult
from tests.packaged import packaged_dicom


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "scans"
    (root / "series").mkdir(parents=True)
    shutil.copy(packaged_dicom("CT_small.dcm"), root / "ct.dcm")
    shutil.copy(packaged_dicom("MR_small.dcm"), root / "series" / "mr.dcm")
    (root / "notes.txt").write_text("not a scan\n")
    (root / ".hidden").write_text("passed over\n")
    return root


def test_file_count_matches_the_files_discovery_accounts_for(tree: Path):
    accounted = sum(len(item.paths) for item in discover([str(tree)]))
    assert count_files([str(tree)]) == accounted == 3
    assert count_files([str(tree)], exclude=[str(tree / "notes.txt")]) == 2
    assert count_files([str(tree / "ct.dcm")]) == 1


def test_bar_shows_files_done_of_total_rate_and_eta_on_a_terminal(tree: Path):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None, width=160)
    bar = ProgressBar([str(tree)], enabled=True, console=console)
    with bar as advance:
        deadline = time.monotonic() + 30
        while bar._progress.tasks[0].total is None and time.monotonic() < deadline:
            time.sleep(0.02)
        for name in ("ct.dcm", "mr.dcm"):
            time.sleep(0.1)
            advance(ScanResult(scan_id=name, paths=(name,), status="ok", kind="dicom",
                               n_files=1))
        bar._progress.refresh()
        shown = buffer.getvalue().rsplit("\r", 1)[-1]  # the last frame drawn
    assert "2/3 files" in shown and "2 scans" in shown and "scans/s" in shown
    assert re.search(r"ETA \d+:\d\d:\d\d", shown), shown


def test_a_row_read_back_by_resume_counts_its_files():
    row = ScanResult.from_row({"scan_id": "a", "status": "ok", "n_files": 12})
    assert files_of(row) == 12


def test_no_bar_under_cron_or_with_quiet(monkeypatch: pytest.MonkeyPatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert ProgressBar.wanted(quiet=False) and not ProgressBar.wanted(quiet=True)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not ProgressBar.wanted(quiet=False)


def test_piped_stderr_gets_log_lines_only(tree: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runner_module, "load_scorer", lambda request: None)
    result = CliRunner().invoke(app, ["score", str(tree), "--out", str(tmp_path / "r.csv"),
                                      "--workers", "0"])
    assert result.exit_code == 0
    assert "ETA" not in result.output and "\x1b[" not in result.output
    assert "2 scan(s)" in result.output


def test_a_terminal_run_draws_the_bar(tree: Path, tmp_path: Path):
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "mediqa_cli", "score", str(tree), "--out",
         str(tmp_path / "r.csv"), "--workers", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
        env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(slave)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 300)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        assert process.wait(timeout=300) == 0
    text = shown.decode("utf-8", "replace")
    assert "scoring" in text and "files" in text and "ETA" in text
    assert "2 scan(s), 2 ok" in text  # log lines still reach the terminal
