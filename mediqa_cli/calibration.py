"""The calibrated scale: a score that means the same degradation in every modality.

Why: the network predicts a physics target (SSIM to the clean original, 0..100). That target is
saturated at the top, differently per modality: a clean fundus photograph scores 99.9 and one
blurred until a reader would reject it still 95, while a mildly degraded CT falls to 80. Grade
bands cut on the raw target therefore separate nothing on one modality and everything on another.

How: graded degradation ladders made by code the model never trained on (`mediqa_train
.eval_ladders`: the clean image and five steps per family, from barely visible to severe) anchor
the scale. Per modality, the typical raw score of each step is the median of logit(raw / 100)
over that step's images (forced to fall with the step); the grade cuts go midway between
neighbouring steps, and the calibrated score is piecewise linear in logit(raw / 100) through

- 80 (A/B) midway between steps 1 and 2: A looks like the clean image or the barely visible step;
- 60 (B/C) midway between steps 2 and 3: B looks like the second step;
- 40 (C/D) midway between steps 3 and 4: C like the third, D like the fourth or fifth;

and 0 and 100 at the ends of the raw scale: logit(raw / 100) = -16.1 and 16.1, about where the
network's fp32 sigmoid stops resolving. Until v0.12.0 the ends were at -9.21 and 9.21 (raw 0.01
and 99.99): clean fundus photographs, whose raw scores differ in the third and fourth decimal,
all read 100.00 there, and so did the first steps of a darkening ladder. With the ends at the
clip the bands beyond the outer cuts are wider in logits, so the same raw score reads lower in A
and higher in D than before; no slice changes grade. (Exponential tails that keep the slope of
the neighbouring band were tried first: where two cuts lie close, MR's and CT's, they reached
100.00 at two decimals sooner than the old ends did, and made averaged scans change grade.) A
regression of the step on the score was tried first and rejected: where the score separates
steps poorly it pulls every image to the middle step, so clean fundus photographs came out at 65
(grade B) and the bands again said nothing.

The map is strictly increasing in the raw score, so it changes no ranking within a modality.
Modalities with too few ladders use the map fitted on all of them pooled. The fit lives next to
the weights (`calibration.json`) because it belongs to one network's raw scale; fine-tuned
weights, whose score is an expert's, carry none and report their raw score.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FILE = "calibration.json"
STEPS = 5  # ladder steps above the clean image
CUT_SCORES = (80.0, 60.0, 40.0)  # the A/B, B/C and C/D bands of mediqa_cli.taxonomy.GRADES
CUT_BETWEEN = ((1, 2), (2, 3), (3, 4))  # each cut lies midway between these steps' scores
POOLED = "*"  # the map for modalities without one of their own
# Raw scores are clipped to [_EDGE, 1 - _EDGE] x 100 before the logit. The network's fp32 sigmoid
# resolves logits up to about 16, so the clip sits there: at 1e-4 (9.21) it made every clean
# fundus photograph read the same (benchmarks/RESULTS.md, "v0.12.1: the score stops clipping").
_EDGE = 1e-7
_LOW, _HIGH = float(np.log(_EDGE / (1 - _EDGE))), float(np.log((1 - _EDGE) / _EDGE))


def read_versioned_json(path: Path) -> tuple[dict[str, Any], str] | None:
    """A file that changes the raw or calibrated score, saved next to the weights, and the digest
    the scores' `model_version` names it by (the first 8 hex digits of its text's sha256), so
    --resume and the history never mix scores made with two versions of it; None if absent."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    return json.loads(text), hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def raw_logit(raw: np.ndarray) -> np.ndarray:
    """logit(raw / 100), clipped so a raw 0 or 100 stays finite."""
    p = np.clip(np.asarray(raw, dtype=np.float64) / 100.0, _EDGE, 1.0 - _EDGE)
    return np.log(p / (1.0 - p))


@dataclass(frozen=True)
class ScaleMap:
    """logit(raw / 100) at which the calibrated score is 80, 60 and 40 (strictly falling)."""

    cuts: tuple[float, float, float]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        x = raw_logit(raw)
        knots = [_LOW, *reversed(self.cuts), _HIGH]
        return np.interp(x, knots, [0.0, *reversed(CUT_SCORES), 100.0])

    def valid(self) -> bool:
        knots = np.asarray([_HIGH, *self.cuts, _LOW])
        return bool(np.all(np.diff(knots) < 0))

    def to_dict(self) -> dict[str, Any]:
        return {"cuts": [round(c, 6) for c in self.cuts]}


@dataclass(frozen=True)
class Calibration:
    """Per-modality scale maps (POOLED for the rest) and where they were fitted."""

    maps: dict[str, ScaleMap]
    fitted_on: str = ""
    digest: str = ""  # of the file it was loaded from: part of the scores' model_version

    def map_for(self, modality: str | None) -> ScaleMap:
        return self.maps.get(modality or POOLED, self.maps[POOLED])

    def apply(self, raw: np.ndarray, modality: str | None) -> np.ndarray:
        """Calibrated scores (same shape as `raw`), 0..100; NaN stays NaN."""
        values = np.asarray(raw, dtype=np.float64)
        out = np.full_like(values, np.nan)
        finite = np.isfinite(values)
        out[finite] = self.map_for(modality).apply(values[finite])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"scale": "grade cuts midway between the typical raw scores of ladder steps",
                "fitted_on": self.fitted_on,
                "maps": {m: s.to_dict() for m, s in sorted(self.maps.items())}}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CALIBRATION_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Calibration | None:
        """The map saved with the weights, or None (the raw score is reported then)."""
        path = Path(directory) / CALIBRATION_FILE
        found = read_versioned_json(path)
        if found is None:
            return None
        data, digest = found
        maps = {m: ScaleMap(tuple(float(c) for c in v["cuts"]))  # type: ignore[arg-type]
                for m, v in data.get("maps", {}).items()}
        if POOLED not in maps:
            raise ValueError(f"{path}: no pooled map ({POOLED!r})")
        for name, scale in maps.items():
            if len(scale.cuts) != len(CUT_SCORES) or not scale.valid():
                raise ValueError(f"{path}: the map for {name} is not increasing in the score")
        return cls(maps, str(data.get("fitted_on", "")), digest)
