"""`mediqa trends`: per scanner x protocol control charts from the history, as a table and a page.

One job: turn the history's scans into one `GroupTrend` per scanner and protocol (nightly
summaries charted by `mediqa_cli.drift`) and say which groups are out of control on their latest
night. The table is plain text for cron mail; the page (`render_trends_page`) adds one figure
per group. A group is in alert when, on its latest two nights, the median score, the fraction of
low grades or a physical cause's median severity has been beyond its EWMA or CUSUM limit (the
two-night rule and the limits are in `mediqa_cli.drift`); `mediqa trends` then exits with
`EXIT_TREND_ALERT`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mediqa_cli.drift import (
    Chart,
    ChartSettings,
    NightValues,
    alarm_since,
    fraction_chart,
    median_chart,
)
from mediqa_cli.results import PHYSICAL_COLUMNS
from mediqa_cli.taxonomy import LOW_GRADES

SCORE, LOW = "score", "low_grades"


@dataclass
class GroupTrend:
    """The charts of one scanner x protocol and what they say about its latest night."""

    scanner: str
    protocol: str
    modality: str
    charts: dict[str, Chart]
    alerts: list[str] = field(default_factory=list)  # "score drift since 2026-11-03", ...
    since: str | None = None  # first night of the earliest alarm still running

    @property
    def nights(self) -> list[str]:
        return self.charts[SCORE].nights

    @property
    def learning(self) -> bool:
        return self.charts[SCORE].learning

    @property
    def status(self) -> str:
        if self.alerts:
            return "ALERT"
        if self.learning:
            return "learning"
        return "ok"

    @property
    def moving_causes(self) -> list[str]:
        """Causes whose severity EWMA is past half its limit on the latest night: not an alert
        yet, but the column a physicist should look at (printed next to the status)."""
        moving = []
        for metric, chart in self.charts.items():
            if (metric.startswith("phys_") and not chart.learning and chart.ewma.size
                    and chart.ewma[-1] > 0.5 * chart.ewma_limit[-1]):
                moving.append(metric[5:])
        return moving


def group_trends(scans: Sequence[dict[str, Any]],
                 settings: ChartSettings | None = None) -> list[GroupTrend]:
    """Charts for every scanner x protocol of the history's scans (as `history.load_scans`
    gives them), groups in alert first."""
    settings = settings or ChartSettings()
    by_group: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    for scan in scans:
        by_group[(scan["scanner"], scan["protocol"])][scan["night"]].append(scan)
    trends = []
    for (scanner, protocol), nights in by_group.items():
        ordered = _current_model_nights(sorted(nights), nights)
        rows = [nights[n] for n in ordered]
        charts: dict[str, Chart] = {}
        charts[SCORE] = median_chart(SCORE, _values(ordered, rows, SCORE), "down", settings,
                                     settings.min_sigma_score, settings.ewma_limit,
                                     settings.cusum_h)
        low = [NightValues(n, np.array([1.0 if r.get("grade") in LOW_GRADES else 0.0
                                        for r in night]))
               for n, night in zip(ordered, rows)]
        charts[LOW] = fraction_chart(LOW, low, settings)
        for column in PHYSICAL_COLUMNS:
            series = _values(ordered, rows, column)
            if len(series) == len(ordered):
                charts[column] = median_chart(column, series, "up", settings,
                                              settings.min_sigma_cause,
                                              settings.cause_ewma_limit, math.inf)
        modality = _most_common([r.get("modality") or "" for night in rows for r in night])
        trend = GroupTrend(scanner, protocol, modality, charts)
        _judge(trend)
        trends.append(trend)
    trends.sort(key=lambda t: (not t.alerts, t.learning, t.scanner, t.protocol))
    return trends


def _values(nights: list[str], rows: list[list[dict[str, Any]]], column: str) -> list[NightValues]:
    """Per night, the finite values of `column` (nights without any are left out)."""
    out = []
    for night, scans in zip(nights, rows):
        values = np.array([float(r[column]) for r in scans
                           if r.get(column) is not None and math.isfinite(float(r[column]))])
        if values.size:
            out.append(NightValues(night, values))
    return out


def _current_model_nights(ordered: list[str], nights: dict[str, list[dict[str, Any]]]
                          ) -> list[str]:
    """The trailing nights scored by the group's latest model version.

    Why: new weights or a new calibration move every score at once (the version names both);
    charted against the old baseline that step would alarm on every scanner. Its nights start a
    baseline of their own instead.
    """
    def version(night: str) -> str:
        return _most_common([str(r.get("model_version") or "") for r in nights[night]])

    latest = version(ordered[-1])
    start = len(ordered)
    while start > 0 and version(ordered[start - 1]) == latest:
        start -= 1
    return ordered[start:]


def _most_common(values: list[str]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return max(counts, key=lambda v: counts[v]) if counts else ""


def _judge(trend: GroupTrend) -> None:
    """Alerts of the latest night: which charts are in alarm (past a limit two nights running),
    and since when they have been past it."""
    starts = []
    for metric, chart in trend.charts.items():
        if chart.learning or not chart.nights or chart.nights[-1] != trend.nights[-1]:
            continue
        since = alarm_since(chart)
        if since is None:
            continue
        label = {SCORE: "score", LOW: "low grades"}.get(metric, metric[5:] if
                                                        metric.startswith("phys_") else metric)
        trend.alerts.append(f"{label} {chart.kind[-1]} since {since}")
        starts.append(since)
    trend.since = min(starts) if starts else None


def any_alert(trends: Sequence[GroupTrend]) -> bool:
    """Does any group need attention (the exit code of `mediqa trends`)?"""
    return any(t.alerts for t in trends)


def format_table(trends: Sequence[GroupTrend]) -> str:
    """A fixed-width table for a terminal or cron mail: one line per scanner x protocol."""
    header = ("status", "scanner", "protocol", "nights", "last night", "n", "median",
              "baseline", "low%", "base low%", "alerts")
    lines = []
    for t in trends:
        score, low = t.charts[SCORE], t.charts[LOW]
        lines.append((
            t.status, t.scanner, t.protocol, str(len(t.nights)), t.nights[-1],
            str(int(score.n[-1])), f"{score.value[-1]:.1f}", _fmt(score.centre, "{:.1f}"),
            f"{100 * low.value[-1]:.0f}", _fmt(100 * low.centre, "{:.0f}"),
            "; ".join(t.alerts) or ("moving: " + ", ".join(t.moving_causes)
                                    if t.moving_causes else ""),
        ))
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    out.extend("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
    return "\n".join(out)


def _fmt(value: float, pattern: str) -> str:
    return pattern.format(value) if math.isfinite(value) else "-"
