"""`mediqa trends --html`: the trend table plus one four-panel chart per scanner x protocol.

Same page machinery as the report page (`mediqa_cli.pages`): one file, inline SVG from
`mediqa_cli.reportlets.trend_figure`, the table script for sorting and filtering. The page
shows only what the history holds: scanner pseudonyms, protocol names, nightly values.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from mediqa_cli.drift import ChartSettings
from mediqa_cli.pages import render, write_page
from mediqa_cli.reportlets import trend_figure
from mediqa_cli.trends import LOW, SCORE, GroupTrend, format_table

TABLE_COLUMNS = (
    ("status", "status", "text"), ("scanner", "scanner", "text"),
    ("protocol", "protocol", "text"), ("modality", "modality", "text"),
    ("nights", "nights", "number"), ("last_night", "last night", "text"),
    ("n", "scans last night", "number"), ("median", "median", "number"),
    ("baseline", "baseline", "number"), ("low", "low %", "number"),
    ("base_low", "baseline low %", "number"), ("alerts", "alerts / moving causes", "text"),
)


def write_trends_page(trends: Sequence[GroupTrend], scans: Sequence[Mapping[str, Any]],
                      out: str | os.PathLike[str], settings: ChartSettings,
                      source: str = "") -> None:
    """Render and write the trends page for these groups (scans give the per-scan dots)."""
    write_page(build_trends_page(trends, scans, settings, source), out)


def build_trends_page(trends: Sequence[GroupTrend], scans: Sequence[Mapping[str, Any]],
                      settings: ChartSettings, source: str = "") -> str:
    """The page's HTML."""
    per_group: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list))
    for scan in scans:
        per_group[(scan["scanner"], scan["protocol"])][scan["night"]].append(float(scan["score"]))
    groups, rows, links = [], [], []
    for trend in trends:
        anchor = "group-" + hashlib.sha256(
            f"{trend.scanner}|{trend.protocol}".encode()).hexdigest()[:12]
        groups.append({
            "anchor": anchor, "status": trend.status, "scanner": trend.scanner,
            "protocol": trend.protocol, "alerts": trend.alerts, "moving": trend.moving_causes,
            "svg": trend_figure(trend, per_group[(trend.scanner, trend.protocol)]),
        })
        score, low = trend.charts[SCORE], trend.charts[LOW]
        rows.append([
            trend.status, trend.scanner, trend.protocol, trend.modality, len(trend.nights),
            trend.nights[-1], int(score.n[-1]), _round(score.value[-1]), _round(score.centre),
            _round(100 * low.value[-1]), _round(100 * low.centre),
            "; ".join(trend.alerts) or ", ".join(trend.moving_causes) or None,
        ])
        links.append(anchor)
    table = {"columns": [{"key": k, "label": label, "type": kind}
                         for k, label, kind in TABLE_COLUMNS],
             "rows": rows, "links": links}
    nights = {scan["night"] for scan in scans}
    return render(
        "trends.html.j2",
        title="MedIQA quality trends",
        source=source,
        groups=groups,
        table=table,
        text_table=format_table(trends),
        n_alerts=sum(bool(t.alerts) for t in trends),
        n_nights=len(nights),
        n_scans=len(scans),
        settings=settings,
    )


def _round(value: float) -> float | None:
    return round(float(value), 1) if math.isfinite(value) else None
