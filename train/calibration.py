"""Fit the calibrated scale (mediqa_cli.calibration) on ladder results, and check it cross-fitted.

Input: the ladders of `mediqa-train evaluate` (its JSON), scored by the weights to calibrate with
no calibration of their own (the raw score). Each group's clean image counts once; every ladder
adds its five degraded steps.

The check says what the grade bands mean on images the fit did not see: the groups of each
modality are split in two halves by a hash of their name, each half is graded by the map fitted
on the other, and the grades are tabulated against the ladder step, beside the raw score cut at
the same bands. The claim the grade bands make ("A: clean or barely visible, C or D: the third
step or worse") is then a measured rate, not a wish.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from mediqa_cli.calibration import CUT_BETWEEN, POOLED, STEPS, Calibration, ScaleMap, raw_logit
from mediqa_cli.taxonomy import grade_for

from .evaluate import LadderResult

CHECK_RATES = ("steps_0_1_graded_A", "steps_3_5_graded_C_or_D", "balanced_accuracy_reject")
MIN_LADDERS = 12  # a modality with fewer ladders uses the pooled map
MIN_GAP = 0.02  # logit: a step's typical score sits at least this far below the previous one
METHOD = "model"


def step_samples(results: Sequence[LadderResult], method: str = METHOD
                 ) -> dict[str, dict[str, list[tuple[float, int]]]]:
    """modality -> group -> [(raw score, step)], each group's clean image once."""
    out: dict[str, dict[str, list[tuple[float, int]]]] = defaultdict(lambda: defaultdict(list))
    clean_seen: set[tuple[str, str]] = set()
    for r in results:
        values = r.values.get(method)
        if values is None:
            continue
        rows = out[r.modality][r.group]
        if (r.modality, r.group) not in clean_seen and math.isfinite(values[0]):
            clean_seen.add((r.modality, r.group))
            rows.append((values[0], 0))
        rows.extend((v, step) for step, v in enumerate(values[1:], start=1) if math.isfinite(v))
    return out


def fit_scale_map(raw: np.ndarray, steps: np.ndarray) -> ScaleMap:
    """Grade cuts midway (in logit) between the median scores of neighbouring ladder steps."""
    x = raw_logit(raw)
    steps = np.asarray(steps, dtype=int)
    typical: list[float] = []
    for step in range(STEPS + 1):
        at = x[steps == step]
        if not at.size:
            raise ValueError(f"no scores at ladder step {step} to fit a calibration on")
        value = float(np.median(at))
        typical.append(min(value, typical[-1] - MIN_GAP) if typical else value)
    cuts = tuple((typical[a] + typical[b]) / 2.0 for a, b in CUT_BETWEEN)
    scale = ScaleMap(cuts)  # type: ignore[arg-type]
    if not scale.valid():
        raise ValueError(f"typical scores per step {np.round(typical, 2)} give no increasing map")
    return scale


def fit_calibration(samples: dict[str, dict[str, list[tuple[float, int]]]],
                    fitted_on: str = "", min_ladders: int = MIN_LADDERS) -> Calibration:
    """Per-modality maps where a modality has `min_ladders` ladders, pooled otherwise."""
    def arrays(groups: dict[str, list[tuple[float, int]]]) -> tuple[np.ndarray, np.ndarray]:
        rows = [row for g in sorted(groups) for row in groups[g]]
        return np.asarray([r[0] for r in rows]), np.asarray([r[1] for r in rows], dtype=int)

    pooled_raw, pooled_steps = [], []
    maps: dict[str, ScaleMap] = {}
    for modality, groups in sorted(samples.items()):
        raw, steps = arrays(groups)
        pooled_raw.append(raw)
        pooled_steps.append(steps)
        if int((steps == STEPS).sum()) >= min_ladders:
            maps[modality] = fit_scale_map(raw, steps)
    if not pooled_raw:
        raise ValueError("no ladder results to fit a calibration on")
    maps[POOLED] = fit_scale_map(np.concatenate(pooled_raw), np.concatenate(pooled_steps))
    return Calibration(maps, fitted_on)


def _half(group: str) -> int:
    return hashlib.sha256(group.encode()).digest()[0] % 2


def crossfit_check(samples: dict[str, dict[str, list[tuple[float, int]]]],
                   min_ladders: int = MIN_LADDERS) -> dict[str, Any]:
    """Grades of each half of the groups under the map fitted on the other half, beside the raw
    score's grades, per modality: the share of each step graded A/B/C/D, the share of steps 0-1
    graded A, of steps 3-5 graded C or D, and the balanced accuracy of "C or D" for steps >= 3
    against steps <= 1."""
    graded: dict[str, dict[str, list[tuple[int, str]]]] = defaultdict(lambda: defaultdict(list))
    for half in (0, 1):
        train = {m: {g: rows for g, rows in groups.items() if _half(g) != half}
                 for m, groups in samples.items()}
        calibration = fit_calibration({m: g for m, g in train.items() if g}, "", min_ladders)
        for modality, groups in samples.items():
            for group, rows in groups.items():
                if _half(group) != half:
                    continue
                raw = np.asarray([r[0] for r in rows])
                calibrated = calibration.apply(raw, modality)
                for (value, step), cal in zip(rows, calibrated):
                    graded["calibrated"][modality].append((step, grade_for(float(cal))))
                    graded["raw"][modality].append((step, grade_for(float(value))))
    return {scale: {m: _grade_table(rows) for m, rows in sorted(per.items())}
            for scale, per in graded.items()}


def _grade_table(rows: Sequence[tuple[int, str]]) -> dict[str, Any]:
    by_step: dict[int, list[str]] = defaultdict(list)
    for step, grade in rows:
        by_step[step].append(grade)

    def share(steps: Sequence[int], grades: str) -> float:
        got = [g for s in steps for g in by_step.get(s, [])]
        return float(np.mean([g in grades for g in got])) if got else math.nan

    accept, reject = share((0, 1), "AB"), share((3, 4, 5), "CD")
    return {
        "per_step": {str(s): {g: round(float(np.mean([x == g for x in by_step[s]])), 3)
                              for g in "ABCD"} for s in sorted(by_step)},
        "steps_0_1_graded_A": round(share((0, 1), "A"), 3),
        "steps_3_5_graded_C_or_D": round(reject, 3),
        "balanced_accuracy_reject": round((accept + reject) / 2.0, 3),
        "images": len(rows),
    }


def check_rows(check: dict[str, Any], arrow: str = "→") -> list[tuple[str, int, list[str]]]:
    """(modality, images, "raw → calibrated" for each of CHECK_RATES) per modality, sorted: the
    rows both `mediqa-train calibrate` and the model card show."""
    return [(name, int(after["images"]),
             [f"{check['raw'][name][k]:.2f} {arrow} {after[k]:.2f}" for k in CHECK_RATES])
            for name, after in sorted(check["calibrated"].items())]
