"""Salient-slice and salient-patch selection, through the fused `saliency_topk` op.

Slices: every slice of a volume is reduced to a small thumbnail (area average, physical units),
the thumbnails are normalised with one range for the whole volume, and `saliency_topk` picks the
k slices with the most structure (gradient energy + variance). Unlike a fixed "first, last and
five middle slices" rule, empty slices (air, padding, slab ends) are never chosen while the
anatomy is. A 2D image is a volume of one slice.

Patches: within a selected slice, the most salient patches are kept, plus a seeded random sample
of the rest, because noise, ghosts and streaks show in the background that a pure saliency rule
would drop. The seed is per slice, so a slice gets the same patches whatever it is batched with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from mediqa_kernels import saliency_topk

from mediqa_cli.preprocess import PATCH, SliceTokens, normalise, robust_range

THUMB_SIZE = 64
DEFAULT_TOP_SLICES = 8
DEFAULT_KEEP_PATCHES = 256
DEFAULT_BACKGROUND_FRACTION = 0.25


@dataclass
class SliceSelection:
    """Chosen slices of one volume.

    indices: (k,) int64 slice indices in ascending order (volume order, not saliency order).
    weights: (k,) float32 saliency weights summing to 1, for the saliency-weighted volume mean.
    scores: (n_slices,) float32 saliency of every slice (for the per-slice HDF5 arrays).
    value_range: (lo, hi) intensity range of the volume for grey non-CT data, None otherwise;
    pass it to `preprocess.normalise` so the selected slices share the volume's scaling.
    """

    indices: np.ndarray
    weights: np.ndarray
    scores: np.ndarray
    value_range: tuple[float, float] | None


@dataclass
class PatchSelection:
    """Chosen patches of one slice: indices (m,) int64 ascending, scores (m,) float32 (NaN for a
    slice within the budget: all of its patches are kept and none is scored)."""

    indices: np.ndarray
    scores: np.ndarray


def thumbnail(image: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """Area-averaged (size, size[, 3]) float32 copy of a raw slice, still in physical units.

    Cheap enough to take of every slice while streaming; non-finite pixels count as the slice's
    finite minimum so that one NaN cannot blank a thumbnail.
    """
    img = np.asarray(image, dtype=np.float32)
    grey = img.ndim == 2
    if grey:
        img = img[..., None]
    finite = np.isfinite(img)
    if not finite.all():
        fill = float(img[finite].min()) if finite.any() else 0.0
        img = np.where(finite, img, fill).astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    small = F.adaptive_avg_pool2d(t, (size, size))[0].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(small[..., 0] if grey else small)


def _volume_images(
    thumbs: Sequence[np.ndarray], modality: str | None
) -> tuple[torch.Tensor, tuple[float, float] | None]:
    """Normalise a volume's thumbnails with one shared range into (n, 3, s, s).

    Written slice by slice into one preallocated tensor, and the shared range is taken from a
    strided sample of every thumbnail, so memory stays ~one normalised copy of the thumbnails.
    """
    first = np.asarray(thumbs[0], dtype=np.float32)
    value_range = None
    if first.ndim == 2 and modality != "CT":
        step = max(1, (len(thumbs) * first.size) // (1 << 18))
        sample = np.concatenate([np.asarray(t, dtype=np.float32).ravel()[::step] for t in thumbs])
        value_range = robust_range(sample)
    out = torch.empty((len(thumbs), 3, first.shape[0], first.shape[1]), dtype=torch.float32)
    for index, thumb in enumerate(thumbs):
        normed = normalise(np.asarray(thumb, dtype=np.float32), modality, value_range)
        out[index] = torch.from_numpy(normed).permute(2, 0, 1)
    return out, value_range


def select_slices_batch(
    volumes: Sequence[tuple[Sequence[np.ndarray], str | None]],
    k: int = DEFAULT_TOP_SLICES,
) -> list[SliceSelection]:
    """Top-k salient slices of several volumes in one `saliency_topk` launch.

    volumes: per volume, (thumbnails of every slice in index order, modality). A volume with at
    most k slices keeps them all.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    images, ranges, counts = [], [], []
    for thumbs, modality in volumes:
        if len(thumbs) == 0:
            raise ValueError("a volume needs at least one slice")
        imgs, value_range = _volume_images(thumbs, modality)
        images.append(imgs)
        ranges.append(value_range)
        counts.append(len(thumbs))
    cu = torch.zeros(len(counts) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.int32), 0)
    scores, top = saliency_topk(torch.cat(images), cu, k)
    scores_np = scores.float().cpu().numpy()
    top_np = top.cpu().numpy()
    out = []
    for v, (start, n) in enumerate(zip(cu[:-1].tolist(), counts)):
        local = top_np[v][top_np[v] >= 0] - start
        local = np.sort(local).astype(np.int64)
        vol_scores = scores_np[start:start + n].astype(np.float32)
        out.append(SliceSelection(local, _weights(vol_scores[local]), vol_scores, ranges[v]))
    return out


def select_slices(
    thumbs: Sequence[np.ndarray], modality: str | None, k: int = DEFAULT_TOP_SLICES
) -> SliceSelection:
    """Top-k salient slices of one volume (see `select_slices_batch`)."""
    return select_slices_batch([(thumbs, modality)], k)[0]


def _weights(scores: np.ndarray) -> np.ndarray:
    s = np.clip(np.nan_to_num(scores.astype(np.float64), nan=0.0), 0.0, None)
    total = s.sum()
    if total <= 0:
        return np.full(len(s), 1.0 / max(1, len(s)), dtype=np.float32)
    return (s / total).astype(np.float32)


def select_patches(
    items: Sequence[SliceTokens],
    keep: int = DEFAULT_KEEP_PATCHES,
    background_fraction: float = DEFAULT_BACKGROUND_FRACTION,
    seeds: Sequence[int] | None = None,
) -> list[PatchSelection]:
    """Keep at most `keep` patches per slice: the most salient plus a seeded background sample.

    A slice with <= keep patches keeps all of them. Otherwise
    round(keep * (1 - background_fraction)) patches come from the segmented top-k and the rest are
    drawn uniformly, without replacement, from the remaining patches with numpy's generator seeded
    by seeds[i] (0 by default).
    """
    if keep < 1 or not 0.0 <= background_fraction < 1.0:
        raise ValueError("keep must be >= 1 and background_fraction in [0, 1)")
    seeds = [0] * len(items) if seeds is None else list(seeds)
    out = [PatchSelection(np.arange(it.n_tokens, dtype=np.int64),
                          np.full(it.n_tokens, np.nan, dtype=np.float32)) for it in items]
    # Only slices over the budget are scored: the op is segmented, so a slice's top-k does not
    # depend on the other slices in the launch, and scoring the rest would be thrown away.
    over = [i for i, it in enumerate(items) if it.n_tokens > keep]
    if not over:
        return out
    n_top = max(1, round(keep * (1.0 - background_fraction)))
    chans = items[over[0]].patches.shape[1] // (PATCH * PATCH)
    patches = torch.from_numpy(np.concatenate([items[i].patches for i in over]))
    counts = torch.tensor([items[i].n_tokens for i in over], dtype=torch.int32)
    cu = torch.zeros(len(over) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(counts, 0)
    scores, top = saliency_topk(patches.view(-1, chans, PATCH, PATCH), cu, n_top)
    scores_np, top_np = scores.float().cpu().numpy(), top.cpu().numpy()
    for j, i in enumerate(over):
        start, n = int(cu[j]), items[i].n_tokens
        chosen = top_np[j][top_np[j] >= 0] - start
        rest = np.setdiff1d(np.arange(n), chosen)
        rng = np.random.default_rng(seeds[i])
        extra = rng.choice(rest, size=min(len(rest), keep - len(chosen)), replace=False)
        idx = np.sort(np.concatenate([chosen, extra])).astype(np.int64)
        out[i] = PatchSelection(idx, scores_np[start:start + n][idx].astype(np.float32))
    return out


__all__ = [
    "DEFAULT_BACKGROUND_FRACTION",
    "DEFAULT_KEEP_PATCHES",
    "DEFAULT_TOP_SLICES",
    "THUMB_SIZE",
    "PatchSelection",
    "SliceSelection",
    "select_patches",
    "select_slices",
    "select_slices_batch",
    "thumbnail",
]
