"""How fast the trend charts find a degrading scanner, and how often they cry wolf.

Synthetic nightly histories of one scanner x protocol, run through exactly what `mediqa trends`
runs (`mediqa_cli.trends.group_trends`, all eleven charts: median score, low-grade fraction and
the nine cause severities). A night has 1 + Poisson(5) scans. A scan's score is the scanner's
level (78) + a night effect (N(0, 1.5), the day-to-day patient mix) + a heavy-tailed scan effect
(8 x Student t with 4 degrees of freedom: the odd moving patient), clipped to 0-100, and its
severities are a per-cause level + noise, as the model's `phys_*` columns scatter.

- Stable histories: no change at all; a false alarm is any alert on any night after the
  baseline (stricter than `mediqa trends`, which only looks at the latest night).
- Degraded histories: from night k (default 15, after a 10-night baseline) the score falls and
  the noise severity rises, either as a step (score -6, noise +0.08 at once) or as a slow drift
  (score -0.6 and noise +0.008 per night). Delay = first alarm night - k; alarms before k are
  counted as false alarms and the history is left out of the delays. "score charts" is the
  share found by the median-score and low-grade charts alone (the noise chart finds most of
  them first): what is left for a change that no physical cause explains.

The rule measured is whatever `mediqa_cli` is imported (the first line printed gives its
settings). Another commit's rule (3841353: the one-night rule) with this script and the same
seeds: export that commit's `mediqa_cli`, put it first on the path, and run with `-S` so that the
editable install's finder does not win:

    .venv/bin/python benchmarks/drift_detection.py                 # 1000 seeds per scenario
    .venv/bin/python benchmarks/drift_detection.py --seeds 200     # quicker
    .venv/bin/python benchmarks/drift_detection.py --scenario stable --set alarm_nights=1
    mkdir -p /tmp/drift-old && git archive 3841353 mediqa_cli | tar -x -C /tmp/drift-old
    PYTHONPATH=/tmp/drift-old:$(echo .venv/lib/python3*/site-packages) \
        .venv/bin/python -S benchmarks/drift_detection.py
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from datetime import date, timedelta

import numpy as np

from mediqa_cli.drift import ChartSettings
from mediqa_cli.results import PHYSICAL_COLUMNS
from mediqa_cli.taxonomy import grade_for
from mediqa_cli.trends import LOW, SCORE, group_trends

LEVEL, NIGHT_SD, SCAN_SD = 78.0, 1.5, 8.0
CAUSE_SD = 0.04


def history(rng: np.random.Generator, nights: int, change: str, k: int,
            size: float) -> list[dict]:
    """Scans (as `history.load_scans` returns them) of one synthetic scanner x protocol."""
    cause_level = rng.uniform(0.05, 0.3, len(PHYSICAL_COLUMNS))
    scans = []
    for night in range(nights):
        after = max(0, night - k + 1) if night >= k else 0
        if change == "step":
            shift, noise = (-size, 0.08 * size / 6.0) if after else (0.0, 0.0)
        elif change == "drift":
            shift, noise = -size * after, 0.008 * size / 0.6 * after
        else:
            shift, noise = 0.0, 0.0
        base = LEVEL + rng.normal(0.0, NIGHT_SD) + shift
        for _ in range(1 + rng.poisson(5)):
            score = float(np.clip(base + SCAN_SD * rng.standard_t(4), 0.0, 100.0))
            row = {"scanner": "scanner-synthetic", "protocol": "T1", "modality": "MR",
                   "night": (date(2026, 1, 1) + timedelta(days=night)).isoformat(),
                   "score": score, "grade": grade_for(score)}
            severities = np.clip(cause_level + CAUSE_SD * rng.standard_t(4, len(cause_level)),
                                 0.0, 1.0)
            severities[0] = min(1.0, severities[0] + noise)  # phys_noise
            row.update(zip(PHYSICAL_COLUMNS, severities.tolist()))
            scans.append(row)
    return scans


def first_alert_nights(scans: list[dict], settings: ChartSettings) -> tuple[int | None,
                                                                            int | None]:
    """Index of the first night on which any chart of the group is in alarm, and the same for
    the median-score and low-grade charts alone."""
    (trend,) = group_trends(scans, settings)
    first: dict[bool, int | None] = {True: None, False: None}
    for metric, chart in trend.charts.items():
        hits = np.flatnonzero(chart.alarm)
        if hits.size:
            index = trend.nights.index(chart.nights[hits[0]])
            for score_only in {False, metric in (SCORE, LOW)}:
                known = first[score_only]
                first[score_only] = index if known is None else min(known, index)
    return first[False], first[True]


SCENARIOS = [("stable", "none", 0.0), ("step -6", "step", 6.0), ("step -3", "step", 3.0),
             ("drift -0.6/night", "drift", 0.6), ("drift -0.3/night", "drift", 0.3)]


def _override(item: str) -> tuple[str, int | float]:
    """`ewma_limit=4` -> ("ewma_limit", 4.0), typed as the field's default ("inf" allowed)."""
    field, _, value = item.partition("=")
    defaults = {f.name: f.default for f in dataclasses.fields(ChartSettings)}
    if field not in defaults or not value:
        raise SystemExit(f"--set wants FIELD=VALUE with FIELD one of {', '.join(defaults)}")
    return field, type(defaults[field])(float(value))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--k", type=int, default=15, help="night the degradation starts (0-based)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a ChartSettings field (the rules that lost in RESULTS.md)")
    parser.add_argument("--scenario", action="append", choices=[s[0] for s in SCENARIOS],
                        help="run only these rows (default: all)")
    args = parser.parse_args()
    settings = ChartSettings(**dict(_override(item) for item in args.set))
    started = time.perf_counter()
    print(f"{args.seeds} seeds, {args.nights} nights, degradation from night {args.k}; "
          + ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(settings).items()))
    print()
    print("| scenario | histories | false alarm | detected | score charts | delay median | "
          "delay p90 | delay max |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, change, size in SCENARIOS:
        if args.scenario and name not in args.scenario:
            continue
        false_alarms, delays, by_score = 0, [], 0
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            scans = history(rng, args.nights, change, args.k, size)
            first, first_score = first_alert_nights(scans, settings)
            if change == "none":
                false_alarms += first is not None
            elif first is not None and first < args.k:
                false_alarms += 1
            elif first is not None:
                delays.append(first - args.k)
                by_score += first_score is not None
        counted = args.seeds - (false_alarms if change != "none" else 0)
        if change == "none":
            print(f"| {name} | {args.seeds} | {false_alarms / args.seeds:.1%} | - | - | - | - "
                  "| - |")
            continue
        detected = len(delays) / counted if counted else 0.0
        scored = by_score / counted if counted else 0.0
        d = np.array(delays) if delays else np.array([np.nan])
        print(f"| {name} | {args.seeds} | {false_alarms / args.seeds:.1%} | {detected:.1%} | "
              f"{scored:.1%} | {np.median(d):.0f} | {np.percentile(d, 90):.0f} | "
              f"{np.max(d):.0f} |")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
