"""Fit the exposure floors that `mediqa_cli.physics_head` adds for photographs.

Bound: the median display mean of the modality's clean corpus slices, `stops_below` stops
darker (two by default: where our exposure simulator, `photo_exposure`, stops teaching, so
nothing the network learnt says what lies below). Price: one grade band of the weights'
calibration per stop, (A/B cut - C/D cut) / 2 in logits, so that every stop of light a
photograph lacks below the bound costs it about one grade. Neither constant is fitted on ladders:
the floor encodes what the training data cannot (its clean set holds under-exposed originals
with a target of 1), not what any judge rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mediqa_cli.calibration import Calibration
from mediqa_cli.physics import PHYSICS_FEATURES
from mediqa_cli.physics_head import ExposureFloor, PhysicsHead

PHOTOGRAPHS = ("FUNDUS", "HISTO")  # lit by their instrument and stored in 8 bits
SPLITS = ("train", "val", "test")
CLAUSE = "exposure floors "  # how a floors clause of `fitted_on` begins; `with_floors` reads it


def floor_for(display_means: np.ndarray, cuts: Sequence[float],
              stops_below: float = 2.0) -> ExposureFloor:
    """The floor from one modality's clean display means and its calibration cuts (logits)."""
    level = np.asarray(display_means, dtype=np.float64)
    level = level[np.isfinite(level) & (level > 0)]
    if level.size == 0:
        raise ValueError("no clean slice with a display mean")
    if len(cuts) != 3 or not cuts[0] > cuts[2]:
        raise ValueError(f"calibration cuts must fall from A/B to C/D, got {list(cuts)}")
    return ExposureFloor(bound=float(np.median(level)) * 2.0 ** -stops_below,
                         per_stop=(float(cuts[0]) - float(cuts[2])) / 2.0)


def fit_floors(corpus: str | Path, weights: str | Path,
               modalities: Sequence[str] = PHOTOGRAPHS,
               stops_below: float = 2.0) -> tuple[dict[str, ExposureFloor], str]:
    """Floors for `modalities` from every split of `corpus` and the cuts in `weights`'
    calibration.json, and a line saying where they came from."""
    from mediqa_train.domain_profile import corpus_measures

    calibration = Calibration.load(weights)
    if calibration is None:
        raise FileNotFoundError(f"{weights}: no calibration.json to price a stop by")
    measures = corpus_measures(corpus, SPLITS, max_per_modality=1_000_000, modalities=modalities)
    column = PHYSICS_FEATURES.index(ExposureFloor.MEASURE)
    floors, counts = {}, []
    for modality in modalities:
        if modality not in measures:
            raise ValueError(f"no {modality} slices in {corpus}")
        floors[modality] = floor_for(measures[modality][:, column],
                                     calibration.map_for(modality).cuts, stops_below)
        counts.append(f"{modality} {len(measures[modality])}")
    # A modality without a map of its own is priced by the pooled one: say so.
    pooled = [m for m in modalities if m not in calibration.maps]
    fitted_on = (f"{CLAUSE}{', '.join(modalities)}: median display mean of the clean "
                 f"slices of {Path(corpus).name} ({', '.join(counts)}) / 2^{stops_below:g}, "
                 f"one grade band of {calibration.digest or 'the'} calibration per stop"
                 + (f" (the pooled cuts for {', '.join(pooled)})" if pooled else ""))
    return floors, fitted_on


def with_floors(head: PhysicsHead | None, floors: dict[str, ExposureFloor],
                fitted_on: str) -> PhysicsHead:
    """`head` (or an empty one) with `floors` in place of its floors for those modalities; its
    `fitted_on` keeps the readers' clauses and every earlier floors clause that still describes
    a floor in use, and says where the new floors came from."""
    if head is None:
        return PhysicsHead({}, fitted_on=fitted_on, floors=floors)
    kept = [clause for clause in head.fitted_on.split("; ")
            if clause and not _describes_only(clause, set(floors))]
    return PhysicsHead(head.readers, head.features, "; ".join([*kept, fitted_on]),
                       floors=head.floors | floors)


def _describes_only(clause: str, refitted: set[str]) -> bool:
    """True for an earlier floors clause ("exposure floors A, B: ...") all of whose modalities
    are refitted now; a clause that still describes a floor in use is kept."""
    if not clause.startswith(CLAUSE):
        return False
    named = {m.strip() for m in clause[len(CLAUSE):].split(":", 1)[0].split(",")}
    return named <= refitted


__all__ = ["PHOTOGRAPHS", "fit_floors", "floor_for", "with_floors"]
