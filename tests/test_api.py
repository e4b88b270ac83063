"""The Python API (`import mediqa`) and `mediqa --version`."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from mediqa_cli.cli import app
from tests.packaged import packaged_dicom


def test_import_mediqa_scores_and_reads_reports(tmp_path: Path):
    import mediqa

    shutil.copy(packaged_dicom("CT_small.dcm"), tmp_path / "ct.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    results = list(mediqa.score(tmp_path))
    assert [type(r).__name__ for r in results] == ["ScanResult", "ScanResult"]
    by_status = {r.status: r for r in results}
    assert set(by_status) == {"ok", "error"}
    ok = by_status["ok"]
    assert ok.modality == "CT" and ok.spacing_mm is not None and ok.iqms
    assert ok.score is None or 0 <= ok.score <= 100
    out = tmp_path / "out" / "r.csv"
    code = CliRunner().invoke(app, ["score", str(tmp_path / "ct.dcm"), "--out", str(out),
                                    "--workers", "0"]).exit_code
    assert code == 0
    frame = mediqa.read_report(out)
    assert len(frame) == 1 and frame.loc[0, "modality"] == "CT"
    assert list(frame.columns[:2]) == ["path", "scan_id"]


def test_version_option_prints_the_version():
    import mediqa_cli

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mediqa {mediqa_cli.__version__}"
