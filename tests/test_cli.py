"""The `mediqa` command end to end: exit codes, stdout streaming, info, demo, workers."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mediqa_cli.cli import app
from mediqa_cli.reports import COLUMNS
from tests.packaged import packaged_dicom

runner = CliRunner()


def test_score_streams_csv_to_stdout_for_pipes(series_dir: Path):
    result = subprocess.run(
        [sys.executable, "-m", "mediqa_cli", "score", str(series_dir), "--out", "-", "-q",
         "--workers", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0].keys()) == COLUMNS
    assert len(rows) == 1 and rows[0]["n_slices"] == "10"


def test_usage_errors_exit_2(tmp_path: Path):
    assert runner.invoke(app, ["score", str(tmp_path)]).exit_code == 2  # --out missing
    bad = runner.invoke(app, ["score", str(tmp_path), "--out", "r.csv", "--modality", "XYZ"])
    assert bad.exit_code == 2
    fmt = runner.invoke(app, ["score", str(tmp_path), "--out", str(tmp_path / "r"), "-f", "xls"])
    assert fmt.exit_code == 2


def test_failed_scan_exits_1_but_report_has_every_row(tmp_path: Path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    shutil.copy(packaged_dicom("CT_small.dcm"), tmp_path / "ct.dcm")
    out = tmp_path / "out" / "r.csv"
    result = runner.invoke(app, ["score", str(tmp_path), "--out", str(out), "--workers", "0"])
    assert result.exit_code == 1
    rows = list(csv.DictReader(open(out)))
    assert sorted(r["status"] for r in rows) == ["error", "ok"]


def test_modality_override_is_reported_with_its_source(tmp_path: Path):
    shutil.copy(packaged_dicom("CT_small.dcm"), tmp_path / "ct.dcm")
    out = tmp_path / "r.csv"
    result = runner.invoke(
        app, ["score", str(tmp_path / "ct.dcm"), "--out", str(out), "--workers", "0",
              "--modality", "mr", "--anatomy", "head"],
    )
    assert result.exit_code == 0
    (row,) = list(csv.DictReader(open(out)))
    assert (row["modality"], row["modality_source"]) == ("MR", "override")
    assert (row["anatomy"], row["anatomy_source"]) == ("head", "override")


def test_worker_pool_gives_the_same_rows_as_in_process(series_dir: Path, tmp_path: Path):
    shutil.copy(packaged_dicom("CT_small.dcm"), series_dir.parent / "ct.dcm")
    outs = []
    # fp32: with workers the scans reach the model in other batches, and bf16 blocks round a
    # scan's outputs differently in another batch (last digit of a `phys_*` column).
    for workers in ("0", "2"):
        out = tmp_path / f"r{workers}.csv"
        result = runner.invoke(app, ["score", str(series_dir.parent), "--out", str(out),
                                     "--workers", workers, "--precision", "fp32"])
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(open(out)))
        outs.append([{k: v for k, v in r.items() if not k.endswith("_seconds")
                      and k != "scored_at"} for r in rows])
    assert outs[0] == outs[1]


def test_info_lists_versions_and_weights():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    for word in ("mediqa", "torch", "triton", "pydicom", "weights"):
        assert word in result.output


def test_demo_builds_real_images_and_scores_them(tmp_path: Path):
    out = tmp_path / "demo.csv"
    result = runner.invoke(app, ["demo", "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out)))
    modalities = {r["modality"] for r in rows}
    assert {"CT", "MR", "XR", "US", "NM", "FUNDUS", "HISTO"} <= modalities
    assert all(r["status"] == "ok" for r in rows)
