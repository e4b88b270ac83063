"""A linear reader of the whole-slice physics tokens, added to the network's quality logit.

Why: the network is fed the physics tokens (`mediqa_cli.physics`) but learns from a target, SSIM
to the clean slice, that prices some faults at almost nothing: our own MR bias fields cost it
1-5 points, so along our simulators' bias ladders of training patients v0.8.0 ranks the steps
at SRCC 0.09, ghosting at 0.34, and its reading leans on the level and local tokens rather than
the bias, ghosting and background tokens built for those faults (`benchmarks/physics_reading.py`,
RESULTS.md). A ranker that only has to put each simulator step below the one before, whatever
the target says it costs, reads those faults from the tokens alone; the two readers fail on
different families, so their sum reads more of them than either.

How: per modality, the tokens are standardised (mean and spread of the fitting slices, a missing
token at the mean), and the term is `-(w . z) - offset` in logit units: `w` is a pairwise
logistic ranker fitted on our simulators' ladders of training patients (`mediqa_train
.physics_head`), scaled so that its spread is a fixed share of the network logit's spread on the
same slices, and `offset` puts the clean slices' median term at zero, so a clean slice keeps the
network's score and a degraded one loses more. Modalities without a reader keep the network's
score. The raw score is `100 * sigmoid(logit(network / 100) + term)`, and the calibrated scale
(`mediqa_cli.calibration`) is fitted on that raw score.

Photographs (fundus, histology) also get an exposure floor (`ExposureFloor`): a one-sided term
that lowers the logit by a fixed amount per stop of light the object lacks below a bound. Why: the
training corpus holds under-exposed originals as clean (fundus display means down to 0.02, each
with an SSIM target of 1), so a near-black photograph holds nothing the network reads as a fault:
darkened further, one scored higher at every step (RESULTS.md, candidate EF). Each stop lost is
one bit fewer of an 8-bit photograph's signal, whatever its texture says. Not for NM, whose low
counts are normal, nor for modalities whose display level is a window setting.

The reader lives next to the weights (`physics_head.json`) because its share is fixed against one
network's logits; its digest is part of the scores' `model_version`.

Fine-tuned weights (`mediqa-train finetune`) carry a site reader instead (`mediqa_train
.label_reader`): fitted on the site's own labels, it also weighs the network's logit
(`network_weight`), so the score is `100 * sigmoid(g * logit + term)`: where the fine-tuned
network separates the site's readers' grades the weight is large, where it does not the tokens
carry the score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediqa_cli.calibration import raw_logit, read_versioned_json
from mediqa_cli.physics import PHYSICS_FEATURES

PHYSICS_HEAD_FILE = "physics_head.json"


@dataclass(frozen=True)
class TokenReader:
    """One modality's term: `-(weights . z) - offset`, z = (tokens - mean) / scale, NaN -> 0;
    the network's logit is multiplied by `network_weight` before the term is added (1 for the
    shipped readers, fitted for a site's)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    offset: float = 0.0
    network_weight: float = 1.0

    def standardise(self, tokens: np.ndarray) -> np.ndarray:
        return np.nan_to_num((np.asarray(tokens, dtype=np.float64) - self.mean) / self.scale)

    def term(self, tokens: np.ndarray) -> np.ndarray:
        """(S, F) tokens -> (S,) logit shifts; higher is better."""
        return -(self.standardise(tokens) @ self.weights) - self.offset

    def logit(self, network_logit: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """The scored logit: the network's, weighted, plus the term."""
        return self.network_weight * np.asarray(network_logit) + self.term(tokens)

    def to_dict(self) -> dict[str, Any]:
        out = {key: [round(float(v), 8) for v in getattr(self, key)]
               for key in ("mean", "scale", "weights")} | {"offset": round(self.offset, 8)}
        if self.network_weight != 1.0:  # absent in the shipped files: their digests stay
            out["network_weight"] = round(self.network_weight, 8)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], n_features: int) -> TokenReader:
        arrays = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
        if any(a.shape != (n_features,) for a in arrays) or not all(np.isfinite(a).all()
                                                                    for a in arrays):
            raise ValueError(f"a reader needs {n_features} finite means, scales and weights")
        if (arrays[1] <= 0).any():
            raise ValueError("a reader's token scales must be positive")
        weight = float(data.get("network_weight", 1.0))
        if not np.isfinite(weight):
            raise ValueError("a reader's network weight must be finite")
        return cls(*arrays, offset=float(data.get("offset", 0.0)), network_weight=weight)


@dataclass(frozen=True)
class ExposureFloor:
    """`-per_stop * max(0, log2(bound / display_mean))` in logit units: nothing above the bound,
    one fixed price for each stop of light below it; no term where the display mean is missing."""

    bound: float
    per_stop: float

    MEASURE = "display_mean"
    _DARKEST = 2.0 ** -12  # a black picture costs 12 stops below 1.0, not infinity

    def term(self, display_mean: np.ndarray) -> np.ndarray:
        level = np.asarray(display_mean, dtype=np.float64)
        stops = np.log2(self.bound / np.maximum(level, self._DARKEST))
        lost = self.per_stop * np.maximum(stops, 0.0)
        return np.where(np.isfinite(level), 0.0 - lost, 0.0)  # 0.0 - 0.0 is +0.0

    def term_of(self, measures: np.ndarray) -> np.ndarray:
        """The term from whole-slice measures laid out as PHYSICS_FEATURES, (..., N_PHYSICS)."""
        return self.term(np.asarray(measures)[..., PHYSICS_FEATURES.index(self.MEASURE)])

    def to_dict(self) -> dict[str, float]:
        return {"bound": round(self.bound, 8), "per_stop": round(self.per_stop, 8)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExposureFloor:
        bound, per_stop = float(data["bound"]), float(data["per_stop"])
        if not (np.isfinite(bound) and np.isfinite(per_stop) and bound > 0 and per_stop >= 0):
            raise ValueError("an exposure floor needs a positive bound and a non-negative price")
        return cls(bound, per_stop)


@dataclass(frozen=True)
class PhysicsHead:
    """Per-modality token readers and exposure floors, the tokens the readers read and where
    both were fitted."""

    readers: dict[str, TokenReader]
    features: tuple[str, ...] = PHYSICS_FEATURES
    fitted_on: str = ""
    digest: str = ""  # of the file it was loaded from: part of the scores' model_version
    floors: dict[str, ExposureFloor] = field(default_factory=dict)

    def apply(self, quality: np.ndarray, physics: Sequence[np.ndarray | None],
              modality: str | None) -> np.ndarray:
        """Per-slice network quality (0..100) read with the modality's reader and floor;
        unchanged for a modality with neither or a slice without measures."""
        values = np.asarray(quality, dtype=np.float64)
        reader = self.readers.get(modality or "")
        floor = self.floors.get(modality or "")
        if reader is None and floor is None:
            return values
        rows = [i for i, measures in enumerate(physics)
                if measures is not None and np.isfinite(values[i])]
        if not rows:
            return values
        measures = np.stack([np.asarray(physics[i], dtype=np.float64) for i in rows])
        logit = raw_logit(values[rows])
        if reader is not None:
            index = [PHYSICS_FEATURES.index(name) for name in self.features]
            logit = reader.logit(logit, measures[:, index])
        if floor is not None:
            logit = logit + floor.term_of(measures)
        out = values.copy()
        out[rows] = 100.0 / (1.0 + np.exp(-logit))
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {"term": "logit shift -(w . z) - offset per modality (mediqa_cli.physics_head)",
               "fitted_on": self.fitted_on, "features": list(self.features),
               "readers": {m: r.to_dict() for m, r in sorted(self.readers.items())}}
        if self.floors:  # absent in files without floors: their digests stay
            out["floors"] = {m: f.to_dict() for m, f in sorted(self.floors.items())}
        return out

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / PHYSICS_HEAD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PhysicsHead | None:
        """The reader saved with the weights, or None (the network's score alone)."""
        path = Path(directory) / PHYSICS_HEAD_FILE
        found = read_versioned_json(path)
        if found is None:
            return None
        data, digest = found
        features = tuple(str(n) for n in data.get("features", ()))
        unknown = [n for n in features if n not in PHYSICS_FEATURES]
        if not features or unknown:
            raise ValueError(f"{path}: unknown physics measures {unknown or 'none listed'}")
        try:
            readers = {str(m): TokenReader.from_dict(r, len(features))
                       for m, r in data.get("readers", {}).items()}
            floors = {str(m): ExposureFloor.from_dict(f)
                      for m, f in data.get("floors", {}).items()}
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None
        return cls(readers, features, str(data.get("fitted_on", "")), digest, floors)
