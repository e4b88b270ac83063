"""Per-item saliency and segmented top-k as the torch op ``mediqa::saliency_topk``.

One op serves two selections: patches inside a slice (items = patches, segments = slices) and
slices inside a volume (items = slices, segments = volumes). Items are packed along dim 0 and
``cu_seqlens`` marks the segments, exactly like the attention op.

Saliency of an item x (C channels, H x W pixels, already intensity-normalised):

    score = mean_c,i,j (x[c,i+1,j] - x[c,i,j])^2 + mean_c,i,j (x[c,i,j+1] - x[c,i,j])^2
            + mean_c Var_ij(x[c])

Gradient energy rewards edges and texture (anatomy, and also the artefacts a quality model has
to see: noise, ringing, motion ghosts); the per-channel variance rewards contrast, so a smooth
but non-empty region still outranks flat background air, where both terms vanish. Both are
cheap single-pass reductions, which is what lets one kernel launch score 10k patches. We kept
this measure: a learned or entropy-based score would need a second pass or a histogram per item
and would not be more informative for picking *where to look* before the model runs.

Ranking: descending score, ties broken by the lower item index, NaN scores ranked last (as -inf),
-0.0 equal to +0.0. Segments with fewer than k items pad their indices with -1.
"""

from __future__ import annotations

import torch

from . import _backend
from ._validation import check_cu_seqlens_values, check_saliency_meta

# Items per chunk: the formula's temporaries are several times the input, so a long series'
# thumbnails are scored in chunks to keep peak memory flat in the series length.
_CHUNK = 256


def saliency_scores_reference(images: torch.Tensor) -> torch.Tensor:
    """The saliency formula above in fp32 torch ops: (N,) float32."""
    if images.shape[0] == 0:
        return images.new_empty((0,), dtype=torch.float32)
    return torch.cat([_scores(images[i:i + _CHUNK]) for i in range(0, images.shape[0], _CHUNK)])


def _scores(images: torch.Tensor) -> torch.Tensor:
    x = images.float()
    grad_y = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    grad_x = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
    var = x.var(dim=(2, 3), unbiased=False).mean(dim=1)
    return grad_y + grad_x + var


def _rank_keys(scores: torch.Tensor) -> torch.Tensor:
    """Scores as ranked: NaN -> -inf and -0.0 -> +0.0, so sort order is fully defined."""
    keys = torch.nan_to_num(scores, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    return torch.where(keys == 0, torch.zeros_like(keys), keys)


def segmented_topk_reference(scores: torch.Tensor, bounds: list[int], k: int) -> torch.Tensor:
    """Per-segment stable descending sort, one Python iteration per segment (the definition).

    ``torch.topk`` does not promise an order among equal values, so the reference uses a stable
    sort, which does: equal scores keep ascending index order.
    """
    keys = _rank_keys(scores)
    out = torch.full((len(bounds) - 1, k), -1, dtype=torch.int64, device=scores.device)
    for seg, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        n = min(k, end - start)
        if n > 0:
            order = torch.sort(keys[start:end], descending=True, stable=True).indices[:n]
            out[seg, :n] = order + start
    return out


def saliency_topk_reference(
    images: torch.Tensor, cu_seqlens: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference twin: formula + per-segment sort. What the tests compare the others against."""
    scores = saliency_scores_reference(images)
    return scores, segmented_topk_reference(scores, cu_seqlens.tolist(), k)


def _segmented_topk_twin(scores: torch.Tensor, bounds: list[int], k: int) -> torch.Tensor:
    """Vectorised segmented top-k: two stable sorts instead of a loop over segments.

    Sorting all scores descending (stable), then stably by segment id, leaves every segment's
    items in rank order with ties in index order; rank = position - segment start.
    """
    n_seg = len(bounds) - 1
    out = torch.full((n_seg, k), -1, dtype=torch.int64, device=scores.device)
    n = scores.shape[0]
    if n == 0:
        return out
    cu = torch.tensor(bounds, dtype=torch.int64, device=scores.device)
    seg_of = torch.repeat_interleave(torch.arange(n_seg, device=scores.device), cu.diff())
    by_score = torch.sort(_rank_keys(scores), descending=True, stable=True).indices
    by_seg = torch.sort(seg_of[by_score], stable=True).indices
    order = by_score[by_seg]
    seg = seg_of[order]
    rank = torch.arange(n, device=scores.device) - cu[seg]
    keep = rank < k
    out[seg[keep], rank[keep]] = order[keep]
    return out


# Low-level torch.library registration, as in varlen_attention.py: custom_op would import
# torch._dynamo (and with it Triton) on the first CPU call.
_LIB = torch.library.Library("mediqa", "FRAGMENT")
_LIB.define(
    "saliency_topk(Tensor images, Tensor cu_seqlens, int k) -> (Tensor scores, Tensor indices)"
)


def _saliency_topk_impl(
    images: torch.Tensor, cu_seqlens: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU and CUDA: Triton for CUDA tensors (and CPU ones under TRITON_INTERPRET=1), else the
    torch twin."""
    check_saliency_meta(images, cu_seqlens, k)
    bounds = check_cu_seqlens_values(cu_seqlens, images.shape[0], "saliency_topk")
    if _backend.use_triton(images):
        return _backend.triton_saliency().saliency_topk(images, cu_seqlens, k, bounds)
    scores = saliency_scores_reference(images)
    return scores, _segmented_topk_twin(scores, bounds, k)


def _saliency_topk_fake(
    images: torch.Tensor, cu_seqlens: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    check_saliency_meta(images, cu_seqlens, k)
    n_seg = cu_seqlens.shape[0] - 1
    return (
        images.new_empty((images.shape[0],), dtype=torch.float32),
        images.new_empty((n_seg, k), dtype=torch.int64),
    )


_LIB.impl("saliency_topk", _saliency_topk_impl, "CPU")
_LIB.impl("saliency_topk", _saliency_topk_impl, "CUDA")  # use_triton: always Triton on CUDA
torch.library.register_fake("mediqa::saliency_topk", _saliency_topk_fake, lib=_LIB)


def saliency_topk(
    images: torch.Tensor, cu_seqlens: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score every packed item and pick the k most salient of each segment (one op, one launch).

    Arguments:
        images: (N, C, H, W) float32 / float16 / bfloat16, intensity-normalised, H, W >= 2; any
            strides.
        cu_seqlens: (S + 1,) int32 on images' device: segment bounds over N, cu_seqlens[0] == 0,
            non-decreasing (empty segments allowed), cu_seqlens[-1] == N.
        k: int >= 1, items to pick per segment.

    Returns:
        scores: (N,) float32, saliency of every item (formula in the module docstring).
        indices: (S, k) int64 global row indices into images, best first; ties go to the lower
            index; -1 where a segment has fewer than k items.
    """
    return torch.ops.mediqa.saliency_topk(images, cu_seqlens, k)
