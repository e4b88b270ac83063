"""Safe outputs: no write over inputs or other files, atomic and umask-respecting writes, a
journal line per scan, clear exit codes for full disks, empty inputs and unwritable formats."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mediqa_cli.cli import app
from mediqa_cli.exit_codes import EXIT_INPUT, EXIT_OUTPUT, EXIT_USAGE
from mediqa_cli.reports import infer_format, journal_path
from mediqa_cli.runner import ScoreRequest, run_score
from tests.packaged import packaged_dicom


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    root = tmp_path / "scans"
    root.mkdir()
    shutil.copy(packaged_dicom("CT_small.dcm"), root / "ct.dcm")
    shutil.copy(packaged_dicom("MR_small.dcm"), root / "mr.dcm")
    return root


def _score(paths: list[Path], out: Path | str, **kwargs) -> int:
    return run_score(ScoreRequest(paths=[str(p) for p in paths], out=str(out), workers=0,
                                  quiet=True, **kwargs))


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_out_pointing_at_an_input_scan_is_refused_even_with_force(scans: Path):
    target = scans / "ct.dcm"
    before = target.read_bytes()
    assert _score([scans], target) == EXIT_OUTPUT
    assert _score([target], target, force=True) == EXIT_OUTPUT
    assert target.read_bytes() == before


def test_out_over_a_file_that_is_not_a_report_needs_force(scans: Path, tmp_path: Path):
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\nspreadsheet,data\n")
    assert _score([scans], notes) == EXIT_OUTPUT
    assert notes.read_text() == "my,own\nspreadsheet,data\n"
    assert _score([scans], notes, force=True) == 0
    assert len(_csv(notes)) == 2
    # An earlier report is replaced without --force (the nightly case).
    assert _score([scans], notes) == 0


def test_a_symlinked_out_replaces_the_report_it_points_to_not_the_link(scans: Path, tmp_path):
    text = tmp_path / "thesis.txt"
    text.write_text("years of work\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(text)
    assert _score([scans], link) == EXIT_OUTPUT
    assert text.read_text() == "years of work\n" and link.is_symlink()
    real = tmp_path / "reports" / "2026-11-01.csv"
    real.parent.mkdir()
    assert _score([scans], real) == 0
    link.unlink()
    link.symlink_to(real)
    assert _score([scans], link) == 0
    assert link.is_symlink() and len(_csv(real)) == 2


def test_out_on_a_device_or_pipe_is_refused_even_with_force(scans: Path, tmp_path: Path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert _score([scans], fifo, force=True) == EXIT_OUTPUT
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    if os.path.exists("/dev/full"):
        assert _score([scans], "/dev/full", force=True) == EXIT_OUTPUT
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_report_mode_follows_the_umask(scans: Path, tmp_path: Path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "r.csv"
        assert _score([scans], out) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        os.umask(0o077)
        private = tmp_path / "p.jsonl"
        assert _score([scans], private) == 0
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_full_disk_exits_5_with_one_line_and_keeps_the_journal(
    scans: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import mediqa_cli.reports as reports

    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync_then_full(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(reports.os, "fsync", fsync_then_full)
    out = tmp_path / "r.csv"
    assert _score([scans], out) == EXIT_OUTPUT
    assert not out.exists()
    assert json.loads(journal_path(out).read_text().splitlines()[0])["status"] == "ok"


def test_a_full_disk_from_the_command_line_prints_no_traceback(scans: Path, tmp_path: Path):
    script = (
        "import errno, os, sys\n"
        "import mediqa_cli.reports as r\n"
        "def full(fd): raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "r.os.fsync = full\n"
        "from mediqa_cli.cli import main\n"
        "sys.argv = ['mediqa', 'score', sys.argv[1], '--out', sys.argv[2], '--workers', '0']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(scans), str(tmp_path / "r.csv")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == EXIT_OUTPUT
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "No space left on device" in errors[0]


def test_ctrl_c_keeps_every_scan_scored_so_far_in_the_journal(
    scans: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import mediqa_cli.runner as runner_module

    for name in ("JPEG-LL.dcm", "US1_J2KR.dcm", "emri_small.dcm"):
        shutil.copy(packaged_dicom(name), scans / name)
    real_discover = runner_module.discover

    def interrupted(paths, exclude=()):  # noqa: ANN001, ANN202
        for n, item in enumerate(real_discover(paths, exclude=exclude)):
            if n == 4:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(runner_module, "discover", interrupted)
    out = tmp_path / "r.csv"
    with pytest.raises(KeyboardInterrupt):
        _score([scans], out)
    journaled = [json.loads(line) for line in journal_path(out).read_text().splitlines()]
    assert len(journaled) == 4
    assert all(row["status"] == "ok" for row in journaled)


def test_resume_rescores_scans_scored_with_other_options(scans: Path, tmp_path: Path):
    out = tmp_path / "r.csv"
    assert _score([scans], out) == 0
    assert {r["modality"] for r in _csv(out)} == {"CT", "MR"}
    assert _score([scans], out, resume=True, modality="XR") == 0
    assert {r["modality"] for r in _csv(out)} == {"XR"}
    assert _score([scans], out, resume=True, modality="XR", max_slices=2) == 0
    expected = "max_slices=2;modality=XR;anatomy=auto;privacy=default"
    assert {r["options"] for r in _csv(out)} == {expected}


def test_csv_cells_that_look_like_formulas_are_escaped(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("=HYPERLINK(1).dcm", "+cmd.dcm", "@SUM(A1).dcm", "-2+3.dcm"):
        shutil.copy(packaged_dicom("CT_small.dcm"), tmp_path / name)
    names = ["=HYPERLINK(1).dcm", "+cmd.dcm", "@SUM(A1).dcm", "-2+3.dcm"]
    out = tmp_path / "r.csv"
    assert run_score(ScoreRequest(paths=names, out=str(out), workers=0, quiet=True)) == 0
    cells = [row["path"] for row in _csv(out)]
    assert sorted(cells) == sorted("'" + name for name in names)
    scores = [row["iqm_snr"] for row in _csv(out)]
    assert all(not s.startswith("'") for s in scores)
    # --resume reads the escaped cells back as the original text.
    assert run_score(ScoreRequest(paths=names, out=str(out), workers=0, quiet=True,
                                  resume=True)) == 0
    assert sorted(row["path"] for row in _csv(out)) == sorted(cells)


@pytest.mark.parametrize("name", ["r.xlsx", "r.csv.gz", "r.xls", "r.zip"])
def test_report_names_of_formats_not_written_are_refused(scans: Path, tmp_path: Path, name: str):
    result = CliRunner().invoke(app, ["score", str(scans), "--out", str(tmp_path / name),
                                      "--workers", "0"])
    assert result.exit_code == EXIT_USAGE
    assert not (tmp_path / name).exists()
    with pytest.raises(ValueError, match="contradicts"):
        infer_format("r.jsonl", "csv")


def test_parquet_report_is_real_parquet(scans: Path, tmp_path: Path):
    import pyarrow.parquet as pq

    out = tmp_path / "r.parquet"
    assert _score([scans], out) == 0
    table = pq.read_table(out)
    assert table.num_rows == 2 and "score" in table.column_names
    assert out.read_bytes()[:4] == b"PAR1"


def test_an_empty_input_folder_exits_4_and_writes_nothing(tmp_path: Path):
    empty = tmp_path / "mount"
    empty.mkdir()
    (empty / "README.txt").write_text("not a scan\n")
    out = tmp_path / "r.csv"
    assert _score([empty], out) == EXIT_INPUT
    assert not out.exists() and not journal_path(out).exists()


def test_a_dicom_truncated_in_its_header_is_an_error_not_skipped(tmp_path: Path):
    data = Path(packaged_dicom("CT_small.dcm")).read_bytes()
    rows_tag = data.find(b"\x28\x00\x10\x00")  # (0028,0010) Rows
    (tmp_path / "cut.dcm").write_bytes(data[: rows_tag - 10])
    out = tmp_path / "out" / "r.csv"
    assert _score([tmp_path / "cut.dcm"], out) == 1
    (row,) = _csv(out)
    assert row["status"] == "error" and "truncated" in row["error"]
