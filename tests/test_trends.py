"""Drift detection on synthetic histories, the trend table and `mediqa trends`' exit codes."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mediqa_cli.cli import app
from mediqa_cli.exit_codes import EXIT_INPUT, EXIT_OK, EXIT_TREND_ALERT
from mediqa_cli.history import record_run
from mediqa_cli.results import PHYSICAL_COLUMNS
from mediqa_cli.taxonomy import grade_for
from mediqa_cli.trends import format_table, group_trends

runner = CliRunner()


def synthetic_scans(seed: int, nights: int = 30, step_from: int | None = None,
                    step: float = 0.0, noise_rise: float = 0.0,
                    scanner: str = "scanner-a") -> list[dict]:
    """Nightly scans of one scanner: 4-8 a night, score 78 + night and scan noise."""
    rng = np.random.default_rng(seed)
    scans = []
    for night in range(nights):
        after = step_from is not None and night >= step_from
        level = 78.0 + rng.normal(0, 1.5) - (step if after else 0.0)
        for i in range(4 + int(rng.integers(5))):
            score = float(np.clip(level + 8 * rng.standard_t(4), 0, 100))
            row = {"scan_id": f"{scanner}-{seed}-{night}-{i}", "scanner": scanner,
                   "protocol": "T1", "modality": "MR", "score": score,
                   "grade": grade_for(score),
                   "night": (date(2026, 1, 1) + timedelta(days=night)).isoformat()}
            for column in PHYSICAL_COLUMNS:
                row[column] = float(np.clip(0.15 + 0.04 * rng.standard_normal(), 0, 1))
            if after:
                row["phys_noise"] += noise_rise
            scans.append(row)
    return scans


def test_stable_histories_raise_no_alert():
    quiet = sum(not group_trends(synthetic_scans(seed))[0].alerts for seed in range(10))
    assert quiet >= 9


def test_a_step_injected_on_night_k_is_found_within_five_nights():
    found = 0
    for seed in range(10):
        (trend,) = group_trends(synthetic_scans(seed, step_from=20, step=15.0))
        first = min((trend.nights.index(c.nights[int(np.flatnonzero(c.alarm)[0])])
                     for c in trend.charts.values() if c.alarm.any()), default=None)
        found += first is not None and 20 <= first <= 25
    assert found >= 9


def test_a_rising_cause_is_flagged_while_the_score_holds():
    (trend,) = group_trends(synthetic_scans(1, step_from=20, noise_rise=0.15))
    assert any(alert.startswith("noise") for alert in trend.alerts)
    assert not any(alert.startswith("score") for alert in trend.alerts)
    assert "noise" in trend.moving_causes


def test_a_group_with_few_nights_is_learning():
    (trend,) = group_trends(synthetic_scans(0, nights=3))
    assert trend.status == "learning" and not trend.alerts
    assert "learning" in format_table([trend])


def _history(tmp_path: Path, degrade: bool) -> Path:
    db = tmp_path / "qa.sqlite"
    scans = synthetic_scans(2, step_from=22 if degrade else None, step=15.0)
    scans += synthetic_scans(3, scanner="scanner-b")
    by_night: dict[str, list[dict]] = {}
    for scan in scans:
        row = {"scan_id": scan["scan_id"], "fingerprint": "f", "status": "ok",
               "score": scan["score"], "grade": scan["grade"], "modality": "MR",
               "scanner_pseudonym": scan["scanner"], "protocol_name": scan["protocol"],
               **{c: scan[c] for c in PHYSICAL_COLUMNS}}
        by_night.setdefault(scan["night"], []).append(row)
    for night, rows in sorted(by_night.items()):
        record_run(db, rows, night)
    return db


def test_trends_command_exits_7_on_an_alert_and_prints_the_table(tmp_path: Path):
    db = _history(tmp_path, degrade=True)
    result = runner.invoke(app, ["trends", str(db)])
    assert result.exit_code == EXIT_TREND_ALERT, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("status") and "scanner-a" in lines[1] and "ALERT" in lines[1]
    assert "score" in lines[1]


def test_trends_command_exits_0_on_a_stable_history_and_4_without_one(tmp_path: Path):
    db = _history(tmp_path, degrade=False)
    assert runner.invoke(app, ["trends", str(db)]).exit_code == EXIT_OK
    assert runner.invoke(app, ["trends", str(tmp_path / "none.sqlite")]).exit_code == EXIT_INPUT


def test_since_starts_a_new_baseline(tmp_path: Path):
    db = _history(tmp_path, degrade=True)
    result = runner.invoke(app, ["trends", str(db), "--since", "2026-01-23"])
    assert result.exit_code == EXIT_OK, result.output  # after the step, the new level is normal
    assert runner.invoke(app, ["trends", str(db), "--since", "23/01"]).exit_code == 2
