"""Drift detection on synthetic histories, the trend table and `mediqa trends`' exit codes."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mediqa_cli.cli import app
from mediqa_cli.drift import (
    Chart,
    ChartSettings,
    NightValues,
    alarm_since,
    median_chart,
    trimmed_centre,
)
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


def test_stable_histories_raise_no_alarm_on_any_night():
    # Any of the eleven charts, any night after the baseline: stricter than the latest-night
    # alert. The one-night rule with the old limits alarmed in 6 of these 100 histories.
    alarmed = [seed for seed in range(100) if any(
        c.alarm.any() for c in group_trends(synthetic_scans(seed))[0].charts.values())]
    assert len(alarmed) <= 1, alarmed


def _nights(values: list[list[float]]) -> list[NightValues]:
    return [NightValues((date(2026, 1, 1) + timedelta(days=i)).isoformat(), np.array(v))
            for i, v in enumerate(values)]


def _baseline(rng: np.random.Generator, nights: int = 10) -> list[list[float]]:
    return [list(78.0 + rng.normal(0, 1.0) + 4.0 * rng.standard_normal(6)) for _ in range(nights)]


def test_one_night_past_the_limit_is_not_an_alarm_two_in_a_row_are():
    rng = np.random.default_rng(0)
    settings = ChartSettings()
    base = _baseline(rng)
    quiet = [list(78.0 + 4.0 * rng.standard_normal(6)) for _ in range(5)]
    bad, best = [[60.0] * 6], [[100.0] * 6]  # a perfect night resets EWMA and CUSUM to zero

    def chart(nights: list[list[float]], alarm_nights: int = 2) -> Chart:
        return median_chart("score", _nights(nights), "down",
                            ChartSettings(alarm_nights=alarm_nights), 0.5,
                            settings.ewma_limit, settings.cusum_h)

    once = base + quiet + bad + best + quiet
    assert chart(once).beyond.sum() == 1 and not chart(once).alarm.any()
    assert chart(once, alarm_nights=1).alarm.sum() == 1
    twice = chart(base + quiet + bad + bad)
    assert twice.alarm[-1] and not twice.alarm[:-1].any()
    assert alarm_since(twice) == twice.nights[-2]  # since the first night past the limit


def test_one_odd_baseline_night_moves_neither_centre_nor_sigma_much():
    rng = np.random.default_rng(1)
    settings = ChartSettings()
    base = _baseline(rng)
    clean = median_chart("score", _nights(base), "down", settings, 0.5, 3.5, 7.0)
    odd = median_chart("score", _nights(base[:4] + [[20.0] * 6] + base[5:]), "down", settings,
                       0.5, 3.5, 7.0)
    assert abs(odd.centre - clean.centre) < 1.0
    assert odd.sigma[0] < 2.0 * clean.sigma[0]  # uncapped, that night makes it 13 times wider


def test_night_to_night_variation_widens_sigma():
    rng = np.random.default_rng(2)
    settings = ChartSettings()
    calm = [list(78.0 + 4.0 * rng.standard_normal(6)) for _ in range(10)]
    shaky = [list(78.0 + rng.normal(0, 5.0) + 4.0 * rng.standard_normal(6)) for _ in range(10)]
    calm_sigma = median_chart("score", _nights(calm), "down", settings, 0.5, 3.5, 7.0).sigma[0]
    shaky_sigma = median_chart("score", _nights(shaky), "down", settings, 0.5, 3.5, 7.0).sigma[0]
    assert shaky_sigma > 1.5 * calm_sigma


def test_trimmed_centre_variance_factor_matches_simulation():
    rng = np.random.default_rng(3)
    for k in (4, 10, 20):
        draws = rng.standard_normal((40_000, k))
        simulated = np.var([trimmed_centre(row)[0] for row in draws]) * k
        factor = trimmed_centre(draws[0])[1]
        assert abs(factor - simulated) < 0.05 * simulated, (k, factor, simulated)
    assert trimmed_centre(np.array([1.0, 2.0, 3.0, 100.0]))[0] == 2.5


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


def test_a_new_model_version_starts_its_own_baseline_instead_of_alarming():
    old = synthetic_scans(3, nights=20)
    new = synthetic_scans(3, nights=30, step_from=20, step=15.0)[len(old):]  # same scans - 15
    for row in old:
        row["model_version"] = "0.5.0"
    for row in new:
        row["model_version"] = "0.5.0+cal-1234abcd"
    mixed = group_trends(old + new)[0]
    assert not any(c.alarm.any() for c in mixed.charts.values())
    for row in new:
        row["model_version"] = "0.5.0"  # the same step under one version is a real change
    assert group_trends(old + new)[0].charts["score"].alarm.any()
