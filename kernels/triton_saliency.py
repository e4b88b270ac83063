"""Triton kernel for fused saliency scoring and segmented top-k: one launch, one program per item.

Twin: ``saliency.py`` (``saliency_scores_reference`` + ``_segmented_topk_twin``). Imported only
when a CUDA tensor reaches the op, or at package import under ``TRITON_INTERPRET=1``.

Each program scores one item (gradient energy + per-channel variance, module docstring of
``saliency.py``), finds its segment by binary search in cu_seqlens, and bumps that segment's
arrival counter. The program that arrives last in a segment has every score of the segment in
memory and ranks it ("last block" pattern: CUDA threadFenceReduction sample), so scoring and
top-k share one launch without a grid-wide barrier.

Ranking packs (score, index) into one int64 key: the float's bits made order-preserving in the
high word, (2^31 - 1 - local index) in the low word. A max over keys is then the best score with
ties to the lower index, and the j-th pick is the max over keys below the (j-1)-th pick, so each
of the k picks is one pass of max-reductions and nothing is written back to mark items as taken.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._backend import interpreting

_INT64_MIN = -9223372036854775808
_INT64_MAX = 9223372036854775807


@triton.jit
def _saliency_topk_kernel(
    X, Scores, Indices, Counters, CuSeqlens,
    num_segments, C, H, W, k,
    stride_n, stride_c, stride_h, stride_w,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_S: tl.constexpr,
    SEARCH_STEPS: tl.constexpr,
):  # fmt: skip
    item = tl.program_id(0)
    offs_h = tl.arange(0, BLOCK_H)
    offs_w = tl.arange(0, BLOCK_W)

    # --- score: sums of squared forward differences and shifted moments, in fp32.
    grad_y = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    grad_x = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    var_sum = 0.0
    for c in range(0, C):
        plane = X + item.to(tl.int64) * stride_n + c * stride_c
        # Moments around the plane's first pixel: no cancellation for offset intensities.
        pivot = tl.load(plane).to(tl.float32)
        s1 = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
        s2 = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
        for r0 in range(0, H, BLOCK_H):
            r = r0 + offs_h
            for c0 in range(0, W, BLOCK_W):
                col = c0 + offs_w
                inside = (r < H)[:, None] & (col < W)[None, :]
                has_right = inside & (col + 1 < W)[None, :]
                has_down = inside & (r + 1 < H)[:, None]
                ptrs = plane + r[:, None].to(tl.int64) * stride_h + col[None, :] * stride_w
                x = tl.load(ptrs, mask=inside, other=0.0).to(tl.float32)
                right = tl.load(ptrs + stride_w, mask=has_right, other=0.0).to(tl.float32)
                down = tl.load(ptrs + stride_h, mask=has_down, other=0.0).to(tl.float32)
                d = tl.where(inside, x - pivot, 0.0)
                s1 += d
                s2 += d * d
                dx = tl.where(has_right, right - x, 0.0)
                dy = tl.where(has_down, down - x, 0.0)
                grad_x += dx * dx
                grad_y += dy * dy
        n_pix = H * W * 1.0
        mean = tl.sum(tl.sum(s1, axis=1), axis=0) / n_pix
        var_sum += tl.maximum(tl.sum(tl.sum(s2, axis=1), axis=0) / n_pix - mean * mean, 0.0)
    cf = C * 1.0
    hf = H * 1.0
    wf = W * 1.0
    score = (
        tl.sum(tl.sum(grad_y, axis=1), axis=0) / (cf * (hf - 1.0) * wf)
        + tl.sum(tl.sum(grad_x, axis=1), axis=0) / (cf * hf * (wf - 1.0))
        + var_sum / cf
    )
    tl.store(Scores + item, score)

    # --- segment of this item: the last s with cu[s] <= item (skips empty segments).
    lo = 0
    hi = num_segments
    for _ in tl.static_range(SEARCH_STEPS):
        mid = (lo + hi) // 2
        go_right = tl.load(CuSeqlens + mid) <= item
        lo = tl.where(go_right, mid, lo)
        hi = tl.where(go_right, hi, mid)
    seg = lo
    seg_start = tl.load(CuSeqlens + seg)
    seg_len = tl.load(CuSeqlens + seg + 1) - seg_start

    # --- last arriver ranks the segment. The barrier + acq_rel atomic publish this program's
    # score before the count; the winner's acquire makes every other score visible to it.
    tl.debug_barrier()
    arrived = tl.atomic_add(Counters + seg, 1, sem="acq_rel")
    if arrived == seg_len - 1:
        offs_s = tl.arange(0, BLOCK_S)
        prev_key = tl.full([], 9223372036854775807, dtype=tl.int64)
        for j in range(0, tl.minimum(k, seg_len)):
            best = tl.full([], -9223372036854775808, dtype=tl.int64)
            for b0 in range(0, seg_len, BLOCK_S):
                local = b0 + offs_s
                ok = local < seg_len
                sc = tl.load(Scores + seg_start + local, mask=ok, other=0.0, cache_modifier=".cg")
                sc = tl.where(sc != sc, float("-inf"), sc)  # NaN ranks last
                sc = tl.where(sc == 0.0, 0.0, sc)  # -0.0 ranks as +0.0
                bits = sc.to(tl.int32, bitcast=True)
                ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # float order as signed int order
                key = (ordered.to(tl.int64) << 32) | (2147483647 - local).to(tl.int64)
                key = tl.where(ok & (key < prev_key), key, -9223372036854775808)
                best = tl.maximum(best, tl.max(key, axis=0))
            pick = 2147483647 - (best & 2147483647)
            tl.store(Indices + seg.to(tl.int64) * k + j, (seg_start + pick).to(tl.int64))
            prev_key = best


def _pow2_at_most(n: int, cap: int) -> int:
    return min(triton.next_power_of_2(max(n, 1)), cap)


def saliency_topk(
    images: torch.Tensor, cu_seqlens: torch.Tensor, k: int, bounds: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the fused kernel: (scores (N,) fp32, indices (S, k) int64). Inputs pre-validated.

    bounds is cu_seqlens as a list (the caller already read it to validate).
    """
    n, c, h, w = images.shape
    n_seg = len(bounds) - 1
    scores = torch.empty((n,), dtype=torch.float32, device=images.device)
    indices = torch.full((n_seg, k), -1, dtype=torch.int64, device=images.device)
    if n == 0:
        return scores, indices
    counters = torch.zeros((n_seg,), dtype=torch.int32, device=images.device)
    longest = max(hi - lo for lo, hi in zip(bounds[:-1], bounds[1:]))
    tile = 256 if interpreting() else 2048  # pixels per tile step
    block_w = _pow2_at_most(w, 64 if interpreting() else 128)
    block_h = _pow2_at_most(h, max(1, tile // block_w))
    block_s = _pow2_at_most(longest, 64 if interpreting() else 1024)
    _saliency_topk_kernel[(n,)](
        images, scores, indices, counters, cu_seqlens,
        n_seg, c, h, w, k,
        images.stride(0), images.stride(1), images.stride(2), images.stride(3),
        BLOCK_H=block_h, BLOCK_W=block_w, BLOCK_S=block_s,
        SEARCH_STEPS=max(1, n_seg.bit_length()),
        num_warps=4,
    )  # fmt: skip
    return scores, indices
