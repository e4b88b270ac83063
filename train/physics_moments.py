"""Centre and spread of the whole-slice physics measures over a corpus's clean training slices.

Why: `PhysicsTokens` standardises each measure before making its token (its docstring says why);
the centre and spread are preprocessing settings saved in the weights' config, so they are
computed once, from clean slices of the training split, and written into the run config that
trains the network (`mediqa-train physics-moments`).

Robust statistics: the median and the inter-quartile range / 1.349 (the standard deviation of a
normal), pooled over modalities sampled equally, because slice counts differ a hundredfold
between modalities and a few clipped or empty slices should not set a measure's unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mediqa_cli.physics import PHYSICS_FEATURES, slice_physics

SCALE_FLOOR = 1e-3  # a measure (nearly) constant over the corpus keeps a usable unit
IQR_TO_SD = 1.349


def sample_physics(pool: Sequence, per_modality: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """(n, N_PHYSICS) measures of up to `per_modality` whole clean slices of each modality, and
    their modalities, drawn with a seeded generator in a fixed order."""
    from mediqa_train.batches import to_reader_layout

    rng = np.random.default_rng(seed)
    by_modality: dict[str, list[int]] = {}
    for i, item in enumerate(pool):
        by_modality.setdefault(item.modality, []).append(i)
    rows, modalities = [], []
    for modality in sorted(by_modality):
        indices = by_modality[modality]
        for i in rng.choice(indices, size=min(per_modality, len(indices)), replace=False):
            image = to_reader_layout(pool[int(i)].image)
            rows.append(slice_physics(np.asarray(image), modality))
            modalities.append(modality)
    return np.array(rows, dtype=np.float64).reshape(-1, len(PHYSICS_FEATURES)), modalities


def robust_moments(measures: np.ndarray) -> tuple[list[float], list[float]]:
    """Per column: (median, IQR / 1.349 floored at SCALE_FLOOR), NaNs ignored; a column with no
    finite value gets (0, 1)."""
    center, scale = [], []
    for column in np.asarray(measures, dtype=np.float64).T:
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            center.append(0.0)
            scale.append(1.0)
            continue
        q25, q50, q75 = np.percentile(finite, [25, 50, 75])
        center.append(round(float(q50), 6))
        scale.append(round(max(float(q75 - q25) / IQR_TO_SD, SCALE_FLOOR), 6))
    return center, scale


__all__ = ["robust_moments", "sample_physics"]
