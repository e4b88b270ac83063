"""MedIQA kernels: variable-length attention and fused saliency top-k (provisional twins).

PROVISIONAL: the kernels work replaces the internals (torch.library ops, Triton on CUDA) but
keeps these two public signatures, which the model codes against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Non-causal attention over packed sequences.

    q, k, v: (total_tokens, heads, head_dim); cu_seqlens: int32 (batch + 1,), cu_seqlens[0] == 0,
    cu_seqlens[-1] == total_tokens. Returns (total_tokens, heads, head_dim), dtype of q.
    """
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end == start:
            continue
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))
        out[start:end] = F.scaled_dot_product_attention(qs, ks, vs, scale=softmax_scale).transpose(0, 1)
    return out


def saliency_topk(
    images: torch.Tensor, cu_seqlens: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item saliency and segmented top-k.

    images: (N, C, H, W) float, normalised; cu_seqlens: int32 (S + 1,) segment bounds over N.
    Returns (scores (N,) float32, indices (S, k) int64 global row indices, -1 where a segment has
    fewer than k items); ties go to the lower index.
    """
    x = images.float()
    gy = x[..., 1:, :] - x[..., :-1, :]
    gx = x[..., :, 1:] - x[..., :, :-1]
    grad = gy.pow(2).mean(dim=(1, 2, 3)) + gx.pow(2).mean(dim=(1, 2, 3))
    var = x.var(dim=(2, 3), unbiased=False).mean(dim=1)
    scores = grad + var
    bounds = cu_seqlens.tolist()
    out = torch.full((len(bounds) - 1, k), -1, dtype=torch.int64, device=images.device)
    for seg, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        n = min(k, end - start)
        if n <= 0:
            continue
        # Stable sort gives the lower index on ties.
        order = torch.sort(scores[start:end], descending=True, stable=True).indices[:n]
        out[seg, :n] = order + start
    return scores, out


__all__ = ["varlen_attention", "saliency_topk"]
