"""Is this scan one of the modalities the model knows? Out-of-domain flagging from slice physics.

Why: the context head must name one of the modalities it was trained on, so a holiday photo, a
scanned page or a screenshot gets called fundus or X-ray and a confident grade. A score on such an
input means nothing; the report has to say so.

How: the whole-slice physics measures (`mediqa_cli.physics`) of the training corpus' slices are
kept as reference points, each measure centred on its median and scaled by its interquartile
range, with an indicator per measure for "undefined" (a grey slice has no chroma, CT in HU no
bit depth) so colour where the corpus is grey counts. A slice's distance to the corpus is the
Euclidean distance to its k-th nearest reference point (k-NN out-of-distribution detection, Sun
et al., ICML 2022): non-parametric, so the many looks of one modality (colour Doppler and B-mode
ultrasound, CT of head and chest) need no Gaussian of their own. The threshold is the
`quantile` of the distances of held-out corpus slices (sources the references never saw). A
scan is out of domain when the median distance of its slices exceeds it. The scorer acts on that
only for scans whose modality no metadata names (`ModelScorer._check_domain`): real scans of
sources unlike the corpus exceed the threshold too, so the distance is evidence, not a verdict.

The choice of k-NN over per-modality Gaussians, and of k and the quantile, is measured in
benchmarks/RESULTS.md ("Out-of-domain inputs"). The references live next to the weights
(`domain.json`) because they depend on the measures' version, which the weights also do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mediqa_cli.physics import PHYSICS_FEATURES

DOMAIN_FILE = "domain.json"
DEFAULT_K = 3
DEFAULT_QUANTILE = 0.95
MISSING_WEIGHT = 3.0  # distance an undefined measure adds where the reference has it defined


@dataclass(frozen=True)
class DomainVerdict:
    """in_domain: False when the scan is unlike the corpus. distance: median slice distance over
    the threshold (<= 1 is in domain). note: what the report should say (None if nothing)."""

    in_domain: bool
    distance: float
    note: str | None


@dataclass(frozen=True)
class DomainCheck:
    """Reference points (n, 2F) in the encoded space, the encoding's centre and scale (F,),
    k, and the threshold on the k-th neighbour distance."""

    centre: np.ndarray
    scale: np.ndarray
    references: np.ndarray
    k: int
    threshold: float
    reference_modalities: tuple[str, ...] = ()

    def encode(self, physics: np.ndarray) -> np.ndarray:
        """(n, F) measures -> (n, 2F): robust z-scores (0 where undefined) and undefined flags."""
        z = (np.atleast_2d(np.asarray(physics, dtype=np.float64)) - self.centre) / self.scale
        missing = ~np.isfinite(z)
        return np.concatenate([np.where(missing, 0.0, z), missing * MISSING_WEIGHT], axis=1)

    def distances(self, physics: np.ndarray) -> np.ndarray:
        """(n,) distance of each slice's measures to its k-th nearest reference point."""
        x = self.encode(physics)
        d2 = ((x[:, None, :] - self.references[None, :, :]) ** 2).sum(axis=-1)
        k = min(self.k, self.references.shape[0])
        return np.sqrt(np.partition(d2, k - 1, axis=1)[:, k - 1])

    def check(self, slices: Sequence[np.ndarray]) -> DomainVerdict:
        """Verdict for a scan from its slices' measures."""
        if not slices:
            return DomainVerdict(True, float("nan"), None)
        ratio = float(np.median(self.distances(np.stack(slices)))) / self.threshold
        if ratio <= 1.0:
            return DomainVerdict(True, ratio, None)
        return DomainVerdict(False, ratio, (
            f"out of domain: unlike every supported modality ({ratio:.1f}x the distance "
            f"threshold); the score does not apply"))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(PHYSICS_FEATURES), "k": self.k, "threshold": self.threshold,
                "centre": _rounded(self.centre), "scale": _rounded(self.scale),
                "references": _rounded(self.references),
                "reference_modalities": list(self.reference_modalities)}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / DOMAIN_FILE
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n",
                        encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> DomainCheck | None:
        """The references saved with the weights, or None when there are none or they were
        made with other measures (the check is then skipped, never guessed)."""
        path = Path(directory) / DOMAIN_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if tuple(data.get("features", ())) != PHYSICS_FEATURES:
            return None
        return cls(np.asarray(data["centre"], float), np.asarray(data["scale"], float),
                   np.asarray(data["references"], float), int(data["k"]),
                   float(data["threshold"]), tuple(data.get("reference_modalities", ())))


def _rounded(array: np.ndarray) -> list[Any]:
    return np.round(np.asarray(array, dtype=np.float64), 4).tolist()


def fit_domain(train: Mapping[str, np.ndarray], held_out: Mapping[str, np.ndarray],
               k: int = DEFAULT_K, quantile: float = DEFAULT_QUANTILE) -> DomainCheck:
    """References from the training slices' measures (per modality, (n, F)), threshold from the
    held-out ones (the `quantile` of their k-th neighbour distances)."""
    names = sorted(m for m, x in train.items() if len(x))
    if not names:
        raise ValueError("no training measures to build references from")
    x = np.concatenate([np.asarray(train[m], dtype=np.float64) for m in names])
    centre = np.nan_to_num(np.nanmedian(x, axis=0))
    spread = np.nanpercentile(x, 75, axis=0) - np.nanpercentile(x, 25, axis=0)
    scale = np.where(np.isfinite(spread) & (spread > 1e-3), spread, 1.0)
    labels = tuple(m for m in names for _ in range(len(train[m])))
    check = DomainCheck(centre, scale, np.zeros((0, 2 * x.shape[1])), k, 1.0, labels)
    references = check.encode(x)
    check = DomainCheck(centre, scale, references, k, 1.0, labels)
    held = [np.asarray(v, dtype=np.float64) for v in held_out.values() if len(v)]
    if not held:
        raise ValueError("no held-out measures to set the threshold on")
    threshold = float(np.quantile(check.distances(np.concatenate(held)), quantile))
    return DomainCheck(centre, scale, references, k, threshold, labels)


__all__ = ["DEFAULT_K", "DEFAULT_QUANTILE", "DOMAIN_FILE", "DomainCheck", "DomainVerdict",
           "fit_domain"]
