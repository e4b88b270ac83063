"""`mediqa eval` joins labels with report rows and reports agreement with intervals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mediqa_cli.cli import app
from mediqa_cli.reports import COLUMNS


def _report(path: Path, scores: list[float], modalities: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for i, (score, modality) in enumerate(zip(scores, modalities)):
            writer.writerow({"path": str(path.parent / f"scan{i}.dcm"), "scan_id": f"id{i}",
                             "status": "ok", "score": score, "modality": modality})


def test_eval_reports_perfect_rank_agreement_and_per_modality_rows(tmp_path: Path):
    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 5, 24)
    scores = list(20 * truth + 3)  # a monotone transform: SRCC = PLCC = 1 after the logistic
    modalities = ["CT"] * 12 + ["MR"] * 12
    _report(tmp_path / "report.csv", scores, modalities)
    with open(tmp_path / "labels.csv", "w") as handle:
        handle.write("path,score\n")
        for i, value in enumerate(truth):
            handle.write(f"scan{i}.dcm,{value}\n")
        handle.write("missing.dcm,3\n")
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "report.csv"), "--labels",
                                      str(tmp_path / "labels.csv"), "--boot", "50",
                                      "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["all"]["n"] == 24 and set(data) == {"all", "CT", "MR"}
    assert data["all"]["srcc"]["value"] == 1.0
    assert data["all"]["plcc"]["value"] > 0.99


def test_eval_refuses_labels_that_match_nothing(tmp_path: Path):
    _report(tmp_path / "report.csv", [50.0, 60.0], ["CT", "CT"])
    (tmp_path / "labels.csv").write_text("path,score\nnope.dcm,1\n")
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "report.csv"), "--labels",
                                      str(tmp_path / "labels.csv")])
    assert result.exit_code == 2


def test_eval_rejects_a_label_that_is_not_a_number(tmp_path: Path):
    _report(tmp_path / "report.csv", [50.0, 60.0, 70.0], ["CT"] * 3)
    (tmp_path / "labels.csv").write_text("path,score\nscan0.dcm,good\n")
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "report.csv"), "--labels",
                                      str(tmp_path / "labels.csv")])
    assert result.exit_code == 2
