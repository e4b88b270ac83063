"""Mirror views of a slice for test-time averaging (`mediqa score --views`).

Why: the weights were pre-trained on randomly flipped and rotated crops, so a mirrored slice is as
valid an input as the original, and the network's errors on the mirrored copies are partly
independent; averaging the outputs of 2 or 4 views (as is; left-right; up-down; both) cancels part
of them, at 2 or 4 times the model's compute. Flips keep the pixel grid and the spacing, so every
view goes through the same preprocessing as the original. Gains on the test ladders:
benchmarks/RESULTS.md ("Mirror views").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

from mediqa_cli.model.packing import SliceOutput

VIEW_COUNTS: tuple[int, ...] = (1, 2, 4)
Image = TypeVar("Image", np.ndarray, torch.Tensor)


def flip_views(image: Image, views: int, axes: tuple[int, int] = (0, 1)) -> list[Image]:
    """The first `views` of (as is, left-right, up-down, both) of an image whose rows and columns
    are `axes` (numpy (rows, cols[, C]) by default; pass (-2, -1) for a (C, H, W) tensor)."""
    if views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views}")
    rows, cols = axes
    flips = ((), (cols,), (rows,), (rows, cols))[:views]
    if isinstance(image, torch.Tensor):
        return [torch.flip(image, list(dims)) if dims else image for dims in flips]
    return [np.ascontiguousarray(np.flip(image, dims)) if dims else image for dims in flips]


def average_views(outputs: Sequence[SliceOutput], views: int) -> list[SliceOutput]:
    """One output per slice from `views` consecutive outputs per slice (slice-major order): mean
    quality, severities and context logits; the prompt rows of the first (unflipped) view."""
    if views == 1:
        return list(outputs)
    if len(outputs) % views:
        raise ValueError(f"{len(outputs)} outputs are not a whole number of {views}-view sets")
    merged = []
    for start in range(0, len(outputs), views):
        group = outputs[start:start + views]
        merged.append(SliceOutput(
            severities=np.mean([o.severities for o in group], axis=0).astype(np.float32),
            quality=float(np.mean([o.quality for o in group])),
            modality_logits=np.mean([o.modality_logits for o in group], axis=0),
            anatomy_logits=np.mean([o.anatomy_logits for o in group], axis=0),
            modality_id=group[0].modality_id,
            anatomy_id=group[0].anatomy_id,
        ))
    return merged


__all__ = ["VIEW_COUNTS", "average_views", "flip_views"]
