"""Packed batches with awkward lengths, shared by the twin tests and the interpreter tests."""

from __future__ import annotations

import torch

# Named length mixes. The interpreter runs 16-row blocks, so 15/16/17 straddle a block edge.
LENGTH_CASES: dict[str, list[int]] = {
    "single_token": [1],
    "block_minus_plus_one": [15, 16, 17],
    "primes": [2, 3, 5, 7, 11, 13, 31, 37],
    "one_long_many_short": [97, 1, 2, 1, 3, 1, 2, 3, 1, 2],
    "zero_length_segments": [0, 5, 0, 0, 20, 0],
}


def cu_from_lengths(lengths: list[int]) -> torch.Tensor:
    """int32 cu_seqlens (len(lengths) + 1,) starting at 0."""
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    if lengths:
        cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
    return cu


def packed_qkv(
    lengths: list[int],
    heads: int = 2,
    head_dim: int = 32,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    requires_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(q, k, v, cu_seqlens, max_seqlen) with random values; q, k, v are leaves."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    q, k, v = (
        torch.randn(total, heads, head_dim, generator=gen).to(dtype).requires_grad_(requires_grad)
        for _ in range(3)
    )
    return q, k, v, cu_from_lengths(lengths), max(lengths, default=0)


def tolerances(dtype: torch.dtype) -> dict[str, float]:
    """assert_close tolerances against the fp32 reference for a kernel dtype."""
    return {
        torch.float32: {"atol": 2e-5, "rtol": 1e-4},
        torch.float16: {"atol": 4e-3, "rtol": 1e-2},
        torch.bfloat16: {"atol": 3e-2, "rtol": 5e-2},
    }[dtype]


def sequence_lse(q: torch.Tensor, k: torch.Tensor, cu: torch.Tensor, scale: float) -> torch.Tensor:
    """Per-sequence log-sum-exp of the scaled scores, (heads, total) fp32, from the definition."""
    heads, total = q.shape[1], q.shape[0]
    lse = torch.empty(heads, total)
    bounds = cu.tolist()
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi > lo:
            s = torch.einsum("qhd,khd->hqk", q[lo:hi].float(), k[lo:hi].float()) * scale
            lse[:, lo:hi] = torch.logsumexp(s, dim=-1)
    return lse


def saliency_batch(
    lengths: list[int],
    channels: int = 1,
    height: int = 9,
    width: int = 13,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, cu_seqlens): items with varied contrast, plus exact ties to rank.

    Every third item is a copy of the one before it (identical score, so the lower index must
    win) and item 1, when present, is flat (score exactly 0).
    """
    gen = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    contrast = torch.rand(n, 1, 1, 1, generator=gen) * 2
    images = torch.randn(n, channels, height, width, generator=gen) * contrast + 0.5
    for i in range(2, n, 3):
        images[i] = images[i - 1]
    if n > 1:
        images[1] = 0.25
    return images.to(dtype), cu_from_lengths(lengths)
