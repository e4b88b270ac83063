"""--log-file and --log-format: JSON lines keyed by scan_id, no raw path or PHI, safe targets."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

import mediqa_cli.runner as runner_module
from mediqa_cli.cli import app
from mediqa_cli.exit_codes import EXIT_OUTPUT
from tests.packaged import packaged_dicom

MARK = "ZQXLOGMARK"
cli = CliRunner()


@pytest.fixture(autouse=True)
def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The log lines do not depend on the model: score with the IQMs only (fast)."""
    monkeypatch.setattr(runner_module, "load_scorer", lambda request: None)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """An ok scan and an error row, under folders and names that carry a patient's values."""
    root = tmp_path / "archive" / f"{MARK}_PATIENT"
    root.mkdir(parents=True)
    ds = pydicom.dcmread(packaged_dicom("CT_small.dcm"))
    ds.PatientID = f"{MARK}_PATIENT"
    ds.PatientName = f"{MARK}^Jane"
    ds.save_as(root / "ct.dcm")
    (root / f"{MARK}_broken.dcm").write_bytes(b"")
    return tmp_path / "archive"


def _score(*args: str) -> int:
    return cli.invoke(app, ["score", *args, "--workers", "0"]).exit_code


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_json_log_lines_carry_scan_id_and_public_path_but_no_raw_path_or_phi(
    tree: Path, tmp_path: Path
):
    log = tmp_path / "logs" / "nightly.jsonl"
    out = tmp_path / "r.csv"
    assert _score(str(tree), "--out", str(out), "-v", "--log-file", str(log),
                  "--log-format", "json") == 1  # the broken file is an error row
    text = log.read_text()
    assert MARK not in text and str(tree) not in text  # (the --out path may show)
    entries = [json.loads(line) for line in text.splitlines()]
    for entry in entries:
        assert {"timestamp", "level", "message"} <= entry.keys()
        assert entry["timestamp"].endswith("Z")
    report = {row["scan_id"]: row for row in _rows(out)}
    per_scan = [e for e in entries if "scan_id" in e]
    assert {e["scan_id"] for e in per_scan} == set(report)
    for entry in per_scan:
        assert entry["path"] == report[entry["scan_id"]]["path"]
    assert {e["level"] for e in per_scan} == {"INFO", "WARNING"}


def test_log_paths_are_raw_only_with_include_phi(tree: Path, tmp_path: Path):
    log = tmp_path / "phi.jsonl"
    _score(str(tree), "--out", str(tmp_path / "r.csv"), "-v", "--include-phi",
           "--log-file", str(log), "--log-format", "json")
    paths = [json.loads(line).get("path") for line in log.read_text().splitlines()]
    assert any(p and MARK in p for p in paths)


def test_text_log_file_grows_night_after_night(tree: Path, tmp_path: Path):
    log = tmp_path / "nightly.log"
    for night in ("a", "b"):
        _score(str(tree), "--out", str(tmp_path / f"{night}.csv"), "--log-file", str(log))
    lines = log.read_text().splitlines()
    assert sum(" mediqa WARNING " in line and "1 error" in line for line in lines) == 2
    assert MARK not in log.read_text()


def test_log_file_is_never_an_input_and_other_files_need_force(tree: Path, tmp_path: Path):
    scan = next(tree.rglob("ct.dcm"))
    before = scan.read_bytes()
    assert _score(str(tree), "--out", str(tmp_path / "r.csv"), "--log-file", str(scan),
                  "--force") == EXIT_OUTPUT
    assert scan.read_bytes() == before
    assert _score(str(tree), "--out", str(tmp_path / "r.csv"), "--log-file",
                  str(tmp_path)) == EXIT_OUTPUT
    notes = tmp_path / "notes.txt"
    notes.write_text("my own notes\n")
    assert _score(str(tree), "--out", str(tmp_path / "r.csv"), "--log-file",
                  str(notes)) == EXIT_OUTPUT
    assert notes.read_text() == "my own notes\n"
    assert _score(str(tree), "--out", str(tmp_path / "r.csv"), "--log-file", str(notes),
                  "--force") == 1
    assert notes.read_text().startswith("my own notes\n") and " mediqa " in notes.read_text()


def test_a_log_file_inside_the_scanned_tree_is_not_scanned(tree: Path, tmp_path: Path):
    shutil.copy(packaged_dicom("MR_small.dcm"), tree / "mr.dcm")
    log = tree / "run.txt"  # a name discovery would otherwise report as an unknown file
    out = tmp_path / "r.csv"
    _score(str(tree), "--out", str(out), "--log-file", str(log))
    assert log.exists()
    assert not any(row["path"].endswith("run.txt") for row in _rows(out))


def test_library_lines_at_vv_name_scan_paths_relative_to_the_input(tree: Path, tmp_path: Path):
    log = tmp_path / "debug.jsonl"
    _score(str(tree), "--out", str(tmp_path / "r.csv"), "-vv", "--log-file", str(log),
           "--log-format", "json")
    messages = [json.loads(line)["message"] for line in log.read_text().splitlines()]
    assert any("Reading file 'archive/" in m for m in messages)
    assert not any(str(tree) in m for m in messages)
