"""Figures of the HTML pages: each function draws one figure and returns it as an SVG snippet.

Why matplotlib to inline SVG (and not plotly with its JavaScript inlined): a page must open from
a file share with no network, and many get mailed around. The score figure of a 10,000-scan
report is about 40 kB of SVG text and a trend figure about 60 kB, with no runtime at all;
plotly's bundle alone is about 3.5 MB per page, before any data, and its figures carry every
point as JSON. SVG also stays sharp when zoomed and prints. What SVG lacks (highlighting one
scan) the page's small script does by placing a marker over the figure: each reportlet returns
the geometry of its axes (`Reportlet.geometry`) for that.

Fonts are left as text (`svg.fonttype = none`), and ids are salted per figure so that several
figures inline in one page never share an id. Habit taken from nipreps' nireports reportlets.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mediqa_cli.taxonomy import GRADES

if TYPE_CHECKING:
    from mediqa_cli.trends import GroupTrend

# Grade band colours (A..D), light enough to sit behind data.
BAND_COLOURS = {"A": "#d9f0d3", "B": "#f1f7c9", "C": "#fde4c4", "D": "#f9d0cf"}
INK, ALERT, BASE = "#1f4e79", "#c0392b", "#7f8c8d"


@dataclass
class Reportlet:
    """An inline SVG figure and where its data axes sit (fractions of the figure, data range)."""

    svg: str
    geometry: dict[str, Any] = field(default_factory=dict)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "font.family": "DejaVu Sans"})
    return plt


def _to_svg(fig: Any, salt: str) -> str:
    """The figure as an <svg> element (no XML prolog), ids unique to `salt`."""
    plt = _pyplot()
    buffer = io.StringIO()
    with plt.rc_context({"svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buffer.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg"):].strip(),
                 flags=re.DOTALL)
    # No fixed size: CSS fits the figure to its container and the viewBox keeps the aspect.
    return re.sub(r'^<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", svg, count=1)


def _bands(ax: Any, horizontal: bool) -> None:
    """Shade the grade bands (A >= 80, B >= 60, C >= 40, D below) along the score axis."""
    upper = 100.0
    for bound, letter in GRADES:
        lower = max(bound, 0.0)
        span = ax.axhspan if horizontal else ax.axvspan
        span(lower, upper, color=BAND_COLOURS[letter], zorder=0, lw=0)
        centre = (lower + upper) / 2
        if horizontal:
            ax.text(1.005, centre, letter, transform=ax.get_yaxis_transform(), va="center",
                    fontsize=8, color=BASE)
        else:
            ax.text(centre, 1.01, letter, transform=ax.get_xaxis_transform(), ha="center",
                    fontsize=8, color=BASE)
        upper = lower


def _axes_box(fig: Any, ax: Any) -> dict[str, float]:
    """Axes position as fractions of the figure from its top-left corner (CSS coordinates)."""
    box = ax.get_position()
    return {"left": box.x0, "right": box.x1, "top": 1.0 - box.y1, "bottom": 1.0 - box.y0}


def score_violins(groups: Mapping[str, Sequence[float]], title: str) -> Reportlet:
    """Violin per group (modality, scanner) of the 0-100 score over the grade bands.

    Groups with one or two scans are drawn as points (a violin of two values is a lie).
    geometry: axes box, the y range (0-100) and each group's x position.
    """
    plt = _pyplot()
    names = list(groups)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2.0), 3.2))
    _bands(ax, horizontal=True)
    positions = list(range(1, len(names) + 1))
    for position, name in zip(positions, names):
        values = np.asarray([v for v in groups[name] if math.isfinite(v)], dtype=float)
        if values.size >= 3 and np.ptp(values) > 0:
            parts = ax.violinplot(values, [position], widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(INK)
                body.set_alpha(0.35)
            q1, med, q3 = np.percentile(values, [25, 50, 75])
            ax.vlines(position, q1, q3, color=INK, lw=3)
            ax.scatter([position], [med], color="white", edgecolor=INK, zorder=3, s=18)
        elif values.size:
            ax.scatter([position] * values.size, values, color=INK, s=14, zorder=3)
    ax.set_xticks(positions, [f"{n}\n({len(groups[n])})" for n in names])
    ax.set_xlim(0.4, len(names) + 0.6)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100)")
    ax.set_title(title, loc="left", fontsize=10)
    fig.tight_layout()
    geometry = {"box": _axes_box(fig, ax), "y": [0.0, 100.0], "x": [0.4, len(names) + 0.6],
                "positions": dict(zip(names, positions)), "kind": "violin"}
    return Reportlet(_to_svg(fig, f"violin-{title}"), geometry)


def score_histogram(scores: Sequence[float], title: str) -> Reportlet:
    """Histogram of every score (2-point bins) over the grade bands; x is the score."""
    plt = _pyplot()
    values = np.asarray([v for v in scores if math.isfinite(v)], dtype=float)
    fig, ax = plt.subplots(figsize=(6.0, 2.6))
    _bands(ax, horizontal=False)
    ax.hist(values, bins=np.arange(0, 102, 2), color=INK, alpha=0.8, zorder=2)
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (0-100)")
    ax.set_ylabel("scans")
    ax.set_title(title, loc="left", fontsize=10)
    fig.tight_layout()
    geometry = {"box": _axes_box(fig, ax), "x": [0.0, 100.0], "kind": "histogram"}
    return Reportlet(_to_svg(fig, f"hist-{title}"), geometry)


def trend_figure(trend: GroupTrend, scores_by_night: Mapping[str, Sequence[float]]) -> str:
    """Four panels for one scanner x protocol, nights on x: scores with the nightly median,
    baseline and lower control limit; EWMA and CUSUM of the standardised median; fraction of
    low grades; median severity of each physical cause (the moving ones labelled)."""
    from mediqa_cli.trends import LOW, SCORE

    plt = _pyplot()
    score, low = trend.charts[SCORE], trend.charts[LOW]
    x = np.arange(len(score.nights))
    fig, axes = plt.subplots(4, 1, figsize=(7.5, 7.2), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.6, 1.3, 1.8]})
    ax = axes[0]
    _bands(ax, horizontal=True)
    for i, night in enumerate(score.nights):
        values = np.asarray(scores_by_night.get(night, ()), dtype=float)
        jitter = np.linspace(-0.25, 0.25, values.size) if values.size > 1 else np.zeros(1)
        ax.scatter(i + jitter[: values.size], values, s=5, color=BASE, alpha=0.6, lw=0)
    ax.plot(x, score.value, "-o", color=INK, ms=3.5, lw=1.4, label="nightly median")
    alarms = np.flatnonzero(score.alarm)
    if not score.learning:
        ax.axhline(score.centre, color=BASE, lw=1, ls="--", label="baseline")
        ax.plot(x, score.lower_limit(3.0), color=ALERT, lw=0.8, ls=":", label="-3 sigma")
        ax.axvspan(-0.5, score.baseline_nights - 0.5, color="#000000", alpha=0.04, lw=0)
    ax.scatter(alarms, score.value[alarms], s=40, facecolor="none", edgecolor=ALERT, lw=1.5,
               zorder=4, label="alarm")
    low_y = min(40.0, float(np.nanmin(score.value)) - 10.0) if score.value.size else 0.0
    ax.set_ylim(max(0.0, low_y), 100)
    ax.set_ylabel("score")
    ax.legend(loc="lower left", fontsize=7, ncol=4, frameon=False)
    ax.set_title(f"{trend.scanner} / {trend.protocol} ({trend.modality or '?'})", loc="left",
                 fontsize=10)

    ax = axes[1]
    if not score.learning:
        # Both statistics as a fraction of their own limit: an alarm is a value above 1.
        ax.plot(x, np.minimum(score.ewma / score.ewma_limit, 3.0), color=INK, lw=1.4,
                label="EWMA / limit")
        ax.plot(x, np.minimum(score.cusum / score.cusum_h, 3.0), color="#8e44ad", lw=1,
                alpha=0.8, label="CUSUM / limit")
        ax.axhline(1.0, color=ALERT, lw=0.8, ls=":", label="alarm")
        ax.legend(loc="upper left", fontsize=7, ncol=3, frameon=False)
        ax.set_ylim(-0.05, 3.05)
    else:
        ax.text(0.5, 0.5, "learning: too few nights for a baseline", ha="center",
                transform=ax.transAxes, color=BASE)
    ax.set_ylabel("score drift")

    ax = axes[2]
    ax.bar(x, 100 * low.value, color="#e67e22", alpha=0.8, width=0.7)
    if not low.learning:
        ax.axhline(100 * low.centre, color=BASE, lw=1, ls="--")
    ax.set_ylabel("low grades %")
    ax.set_ylim(0, 100)

    ax = axes[3]
    moving = set(trend.moving_causes)
    for metric, chart in trend.charts.items():
        if not metric.startswith("phys_"):
            continue
        positions = [score.nights.index(n) for n in chart.nights]
        name = metric[5:]
        strong = name in moving or any(a.startswith(name + " ") for a in trend.alerts)
        ax.plot(positions, chart.value, lw=1.6 if strong else 0.7,
                color=ALERT if strong else BASE, alpha=1.0 if strong else 0.6,
                label=name if strong else None)
        if strong and positions:
            ax.annotate(name, (positions[-1], chart.value[-1]), fontsize=7, color=ALERT,
                        xytext=(3, 0), textcoords="offset points", va="center")
    ax.set_ylabel("cause severity")
    ax.set_ylim(bottom=0)
    step = max(1, len(x) // 10)
    ax.set_xticks(x[::step], [score.nights[i][5:] for i in x[::step]])
    ax.set_xlabel("night (month-day)")
    fig.tight_layout()
    return _to_svg(fig, f"trend-{trend.scanner}-{trend.protocol}")
