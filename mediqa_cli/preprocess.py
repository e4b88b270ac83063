"""Modality-aware intensity normalisation and native-resolution patchify.

Every slice leaves here as N_CHANNELS channels in [0, 1], so one patch embedding serves CT, MR,
X-ray, ultrasound, nuclear medicine and colour photographs alike:

- CT: three fixed HU windows (soft tissue, lung, bone). Hounsfield units are absolute, so a
  fixed window keeps noise and dose differences visible instead of normalising them away.
- Grey modalities without absolute units (MR, XR, NM, US, ...): robust 1-99.5 percentile scaling
  (of the slice, or of the volume when the caller passes its range), replicated to the three
  channels. Replication makes a grey scan look like a grey photograph to the embedding; the
  modality prompt, not the channel layout, tells the model what it is looking at.
- Colour (photographs, fundus, histology, RGB ultrasound): kept as colour, scaled 0..255 -> 0..1.

Patchify keeps the aspect ratio and the native resolution, downscaling only when the 16 px grid
would exceed a per-slice token budget, and carries the physical pixel spacing after any resize so
that the model can tell a blurred image from a coarsely sampled one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PATCH = 16
N_CHANNELS = 3
DEFAULT_MAX_PATCHES = 1024

# (level, width) in HU: soft tissue, lung, bone.
CT_WINDOWS: tuple[tuple[float, float], ...] = ((40.0, 400.0), (-600.0, 1500.0), (400.0, 1800.0))
PERCENTILES: tuple[float, float] = (1.0, 99.5)


@dataclass
class SliceTokens:
    """One slice as patches, ready for packing.

    patches: (n, N_CHANNELS * PATCH * PATCH) float32, each patch flattened channel-major (C, y, x).
    coords: (n, 2) int64 patch grid (row, col). grid: (rows, cols) of the full patch grid, which
    may hold more patches than `patches` after patch selection. spacing_mm: (row, col) mm per
    pixel after any resize, NaN when unknown. scale: resized / original size (<= 1).
    """

    patches: np.ndarray
    coords: np.ndarray
    grid: tuple[int, int]
    spacing_mm: tuple[float, float]
    scale: float = 1.0
    physics: np.ndarray | None = None  # (N_PHYSICS,) whole-slice measures, mediqa_cli.physics

    @property
    def n_tokens(self) -> int:
        return int(self.patches.shape[0])

    def norm_coords(self) -> np.ndarray:
        """Patch centres on a [0, 1] frame: the same anatomy lands at the same place at any size."""
        grid = np.asarray(self.grid, dtype=np.float32)
        return ((self.coords.astype(np.float32) + 0.5) / grid).astype(np.float32)

    def take(self, indices: np.ndarray) -> SliceTokens:
        """The same slice restricted to some patches (grid and spacing unchanged)."""
        idx = np.asarray(indices, dtype=np.int64)
        return SliceTokens(
            self.patches[idx], self.coords[idx], self.grid, self.spacing_mm, self.scale,
            self.physics
        )


def robust_range(
    values: np.ndarray, percentiles: tuple[float, float] = PERCENTILES
) -> tuple[float, float]:
    """Percentile range of the finite values; (0, 1) when there are none.

    Robust against hot pixels and a few saturated voxels, which a min/max scaling would let set
    the contrast of the whole image.
    """
    finite = np.asarray(values, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    if finite.size > 1 << 18:  # a strided sample is plenty for percentiles and keeps it fast
        finite = finite[:: finite.size // (1 << 18)]
    lo, hi = np.percentile(finite, percentiles)
    return float(lo), float(hi)


def normalise(
    image: np.ndarray,
    modality: str | None,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map a slice in physical units to (rows, cols, N_CHANNELS) float32 in [0, 1].

    image: (rows, cols) grey or (rows, cols, 3) colour, as `Scan.read_slice` returns it.
    modality: one of taxonomy.MODALITIES or None. value_range: (lo, hi) for grey non-CT data; pass
    the volume's range so that all slices of a volume share one scaling (empty slices then stay
    dark instead of having their noise stretched to full contrast). NaN and inf become 0.
    """
    return _replicate(_planes(image, modality, value_range))


def _replicate(planes: np.ndarray) -> np.ndarray:
    """(rows, cols) grey -> (rows, cols, N_CHANNELS); colour and CT planes pass through."""
    if planes.ndim == 3:
        return planes
    return np.ascontiguousarray(np.repeat(planes[..., None], N_CHANNELS, axis=-1))


def _planes(
    image: np.ndarray, modality: str | None, value_range: tuple[float, float] | None
) -> np.ndarray:
    """`normalise` before grey data is replicated to N_CHANNELS: (rows, cols, 3) for colour and
    CT, (rows, cols) for the rest, so the tokeniser can cut one plane and copy patches."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        if img.shape[2] != 3:
            raise ValueError(f"expected (rows, cols) or (rows, cols, 3), got {img.shape}")
        out = np.clip(np.nan_to_num(img, nan=0.0, posinf=255.0, neginf=0.0) / 255.0, 0.0, 1.0)
        return np.ascontiguousarray(out, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected (rows, cols) or (rows, cols, 3), got {img.shape}")
    if modality == "CT":
        hu = np.nan_to_num(img, nan=-1000.0, posinf=3000.0, neginf=-1000.0)
        chans = [(hu - (level - width / 2)) / width for level, width in CT_WINDOWS]
        out = np.clip(np.stack(chans, axis=-1), 0.0, 1.0)
        return np.ascontiguousarray(out, dtype=np.float32)
    lo, hi = value_range if value_range is not None else robust_range(img)
    span = hi - lo if hi - lo > 1e-6 * max(1.0, abs(hi)) else 1.0
    grey = np.nan_to_num((img - lo) / span, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def fit_to_budget(rows: int, cols: int, max_patches: int, patch: int = PATCH) -> tuple[int, int]:
    """Largest (rows, cols) with the same aspect whose patch grid fits in max_patches.

    Unchanged when it already fits: native resolution is the point, downscaling only caps cost.
    """
    if max_patches < 1:
        raise ValueError("max_patches must be >= 1")
    if math.ceil(rows / patch) * math.ceil(cols / patch) <= max_patches:
        return rows, cols
    scale = math.sqrt(max_patches * patch * patch / (rows * cols))
    while True:
        new_r, new_c = max(1, int(rows * scale)), max(1, int(cols * scale))
        if math.ceil(new_r / patch) * math.ceil(new_c / patch) <= max_patches:
            return new_r, new_c
        scale *= 0.98


def patchify(
    image: np.ndarray,
    spacing_mm: Sequence[float] = (math.nan, math.nan),
    max_patches: int = DEFAULT_MAX_PATCHES,
    patch: int = PATCH,
) -> SliceTokens:
    """Cut a normalised (rows, cols, C) slice into patch tokens at native resolution.

    Downscales (antialiased, aspect kept) only when the grid would exceed max_patches; pads the
    bottom/right edge with zeros up to whole patches (an image smaller than a patch becomes one
    padded patch). spacing_mm is (row, col) mm per pixel of the input; the returned spacing is per
    pixel after the resize.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    rows, cols, chans = img.shape
    if rows < 1 or cols < 1:
        raise ValueError(f"empty slice {img.shape}")
    new_r, new_c = fit_to_budget(rows, cols, max_patches, patch)
    if (new_r, new_c) != (rows, cols):
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]  # (1, C, r, c)
        t = F.interpolate(t, size=(new_r, new_c), mode="bilinear", antialias=True,
                          align_corners=False)[0]
        img = t.permute(1, 2, 0).numpy()
    grid_r, grid_c = math.ceil(new_r / patch), math.ceil(new_c / patch)
    # Zero-pad bottom/right to whole patches, then (gr, p, gc, p, C) -> (gr, gc, C, p, p) ->
    # (gr*gc, C*p*p): pure data movement, one copy.
    padded = np.zeros((grid_r * patch, grid_c * patch, chans), dtype=np.float32)
    padded[:new_r, :new_c] = img
    tiles = padded.reshape(grid_r, patch, grid_c, patch, chans).transpose(0, 2, 4, 1, 3)
    patches = np.ascontiguousarray(tiles).reshape(grid_r * grid_c, chans * patch * patch)
    rr, cc = np.meshgrid(np.arange(grid_r), np.arange(grid_c), indexing="ij")
    coords = np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.int64)
    sr, sc = (float(s) for s in spacing_mm)
    resized = (new_r, new_c) != (rows, cols)
    out_spacing = (sr * rows / new_r, sc * cols / new_c) if resized else (sr, sc)
    return SliceTokens(patches, coords, (grid_r, grid_c), out_spacing, new_r / rows)


def preprocess_slice(
    image: np.ndarray,
    modality: str | None,
    spacing_mm: Sequence[float] = (math.nan, math.nan),
    max_patches: int = DEFAULT_MAX_PATCHES,
    value_range: tuple[float, float] | None = None,
    physics: bool = False,
) -> SliceTokens:
    """normalise + patchify: one raw slice from `Scan.read_slice` to tokens; with `physics`,
    the whole-slice measures of `mediqa_cli.physics`, taken on the raw slice at full resolution
    before any scaling or downscale."""
    planes = _planes(image, modality, value_range)
    rows, cols = planes.shape[:2]
    if planes.ndim == 2 and fit_to_budget(rows, cols, max_patches) == (rows, cols):
        # Grey at native size: cut the one plane and copy each patch to the channels (what
        # patchify of the replicated image gives, for a third of the work).
        tokens = patchify(planes, spacing_mm, max_patches)
        tokens.patches = np.tile(tokens.patches, (1, N_CHANNELS))
    else:
        tokens = patchify(_replicate(planes), spacing_mm, max_patches)
    if physics:
        from mediqa_cli.physics import slice_physics

        tokens.physics = slice_physics(image, modality)
    return tokens


__all__ = [
    "CT_WINDOWS",
    "DEFAULT_MAX_PATCHES",
    "N_CHANNELS",
    "PATCH",
    "SliceTokens",
    "fit_to_budget",
    "normalise",
    "patchify",
    "preprocess_slice",
    "robust_range",
]
