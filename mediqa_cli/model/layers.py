"""Building blocks of the MedIQA encoder: position and spacing embeddings, packed attention blocks.

Every forward here takes packed tensors only (no padding, no Python containers), so the network
scripts with TorchScript and exports with torch.export.
"""

from __future__ import annotations

import mediqa_kernels  # noqa: F401  (importing it registers torch.ops.mediqa.*)
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def packed_attention(
    q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int, scale: float
) -> Tensor:
    """Attention within each packed sequence; q, k, v (tokens, heads, head_dim).

    The one place the network calls attention: the registered op, which eager, torch.compile,
    TorchScript and torch.export all see (Triton on CUDA, the PyTorch twin on CPU).
    """
    return torch.ops.mediqa.varlen_attention(q, k, v, cu_seqlens, max_seqlen, scale)


def _lerp_table(table: Tensor, t: Tensor) -> Tensor:
    """Linear interpolation of a (grid, width) table at t in [0, 1] -> (len(t), width)."""
    last = table.shape[0] - 1
    x = t.clamp(0.0, 1.0) * last
    i0 = x.floor().to(torch.int64).clamp(0, last - 1)
    w = (x - i0.to(x.dtype)).unsqueeze(1).to(table.dtype)
    return table[i0] * (1.0 - w) + table[i0 + 1] * w


class GridPosition(nn.Module):
    """Factorised learned 2D position over normalised patch centres (row, col) in [0, 1].

    Two 1D tables interpolated linearly: any grid size maps onto the same [0, 1] frame, so there
    is no extrapolation to unseen sizes (a 2D RoPE over integer positions would have to
    extrapolate from training crops to 1024-patch slices), it costs 2 * grid * width parameters,
    and it is plain gathers and arithmetic for TorchScript and export. Physical scale comes from
    the spacing embedding, not from positions.
    """

    def __init__(self, grid: int, width: int) -> None:
        super().__init__()
        self.rows = nn.Parameter(torch.randn(grid, width) * 0.02)
        self.cols = nn.Parameter(torch.randn(grid, width) * 0.02)

    def forward(self, coords: Tensor) -> Tensor:
        return _lerp_table(self.rows, coords[:, 0]) + _lerp_table(self.cols, coords[:, 1])


class SpacingEmbedding(nn.Module):
    """log(mm per pixel) (row, col) through a small MLP; a learned vector when spacing is unknown.

    Lets the model tell a sharp image sampled coarsely from a blurred finely sampled one, which
    look alike in pixels. Log because spacings span 0.05 mm (histology) to 5 mm (NM).
    """

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.unknown = nn.Parameter(torch.zeros(width))

    def forward(self, spacing: Tensor) -> Tensor:
        spacing = spacing.to(self.fc1.weight.dtype)
        known = torch.isfinite(spacing).all(dim=1, keepdim=True) & (spacing > 0).all(
            dim=1, keepdim=True
        )
        feat = torch.where(known, spacing, torch.ones_like(spacing)).clamp_min(1e-4).log()
        emb = self.fc2(F.gelu(self.fc1(feat)))
        return torch.where(known, emb, self.unknown.to(emb.dtype).expand_as(emb))


class PackedAttention(nn.Module):
    """Multi-head self-attention over packed sequences (cu_seqlens), no padding."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.scale = float(self.head_dim) ** -0.5
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
        tokens = x.shape[0]
        qkv = self.qkv(x).reshape(tokens, 3, self.heads, self.head_dim)
        q, k, v = qkv.unbind(1)
        out = packed_attention(q, k, v, cu_seqlens, max_seqlen, self.scale)
        return self.proj(out.reshape(tokens, self.heads * self.head_dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(round(width * mlp_ratio))
        self.norm1 = nn.LayerNorm(width)
        self.attn = PackedAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
        x = x + self.attn(self.norm1(x), cu_seqlens, max_seqlen)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


__all__ = [
    "Block",
    "GridPosition",
    "PackedAttention",
    "SpacingEmbedding",
    "packed_attention",
]
