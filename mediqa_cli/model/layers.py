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


class PatchPhysics(nn.Module):
    """Noise, blur and compression statistics of each patch, embedded next to its pixels.

    Why: a linear 16x16 patch embedding sees intensities, but the quality of a patch is in
    second-order statistics (noise variance, high- versus low-frequency energy, 8-px block edges,
    clipping) that a linear map cannot compute and a small transformer learns slowly and
    content-bound from a few hundred slices. These are the measurements classical IQMs are built
    on; computing them per patch and channel (CT windows, colour planes) hands the encoder the
    physics and leaves it to learn how to weigh them per modality and where in the image.

    Per channel: mean, log std, log RMS of the 3x3 Laplacian at full and half resolution, log RMS
    gradient, log(L2 / L1) of the Laplacian (Gaussian noise versus sparse edges), 8-px blockiness
    across rows and columns, fractions clipped at 0 and 1; plus the Laplacian magnitude map, so
    the encoder also sees where in the patch the high frequencies are (streaks, ghost lines).
    Fixed filters only (no parameters besides the two embeddings): TorchScript and export safe.
    """

    def __init__(self, channels: int, patch: int, width: int, hidden: int = 64) -> None:
        super().__init__()
        if patch < 8 or patch % 8:
            raise ValueError("PatchPhysics needs a patch size that is a multiple of 8")
        self.channels = channels
        self.patch = patch
        self.n_stats = 10
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("laplacian", lap.expand(channels, 1, 3, 3).clone(),
                             persistent=False)
        # 8-px block edges inside a patch: differences between pixel 8k-1 and 8k, k >= 1.
        edges = torch.zeros(patch - 1)
        edges[7::8] = 1.0
        self.register_buffer("block_edges", edges, persistent=False)
        self.stats_fc1 = nn.Linear(channels * self.n_stats, hidden)
        self.stats_fc2 = nn.Linear(hidden, width)
        self.map_embed = nn.Linear(channels * (patch - 2) * (patch - 2), width)

    def _lap(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu":
            # The same 5-point stencil as shifted views: on the CPU, oneDNN's grouped conv2d on
            # 16x16 patches cost ~14x this (half of PatchPhysics; benchmarks/RESULTS.md).
            return (x[..., :-2, 1:-1] + x[..., 2:, 1:-1] + x[..., 1:-1, :-2] + x[..., 1:-1, 2:]
                    - 4.0 * x[..., 1:-1, 1:-1])
        return F.conv2d(x, self.laplacian.to(x.dtype), groups=self.channels)

    def forward(self, patches: Tensor) -> Tensor:
        """(n, patch_dim) patches -> (n, width) embedding of their statistics and Laplacian."""
        c, p = self.channels, self.patch
        x = patches.reshape(-1, c, p, p).float()
        eps = 1e-6
        lap = self._lap(x)  # (n, c, p-2, p-2)
        coarse = self._lap(F.avg_pool2d(x, 2))
        dx = x[..., :, 1:] - x[..., :, :-1]
        dy = x[..., 1:, :] - x[..., :-1, :]
        lap_l2 = lap.square().mean((2, 3))
        lap_l1 = lap.abs().mean((2, 3))
        edge_w = self.block_edges.to(x.dtype)
        n_edges = edge_w.sum()
        col_jump = dx.abs().mean(2)  # (n, c, p-1): mean |difference| across each column pair
        row_jump = dy.abs().mean(3)
        inner = float(p - 1) - n_edges
        col_block = ((col_jump * edge_w).sum(2) / n_edges + eps) / (
            (col_jump * (1 - edge_w)).sum(2) / inner + eps)
        row_block = ((row_jump * edge_w).sum(2) / n_edges + eps) / (
            (row_jump * (1 - edge_w)).sum(2) / inner + eps)
        stats = torch.stack([
            x.mean((2, 3)) * 2.0 - 1.0,
            0.25 * torch.log(x.var((2, 3), unbiased=False) + eps),
            0.125 * torch.log(lap_l2 + eps),
            0.125 * torch.log(coarse.square().mean((2, 3)) + eps),
            0.125 * torch.log(dx.square().mean((2, 3)) + dy.square().mean((2, 3)) + eps),
            torch.log(lap_l2.sqrt() + eps) - torch.log(lap_l1 + eps),
            torch.log(col_block),
            torch.log(row_block),
            (x >= 0.995).to(x.dtype).mean((2, 3)),
            (x <= 0.005).to(x.dtype).mean((2, 3)),
        ], dim=2).reshape(x.shape[0], c * self.n_stats)
        # log1p compresses the map: noise (~0.01-0.1) and edges (~1) both stay in range.
        lap_map = 0.25 * torch.log1p(32.0 * lap.abs()).reshape(x.shape[0], -1)
        out = self.stats_fc2(F.gelu(self.stats_fc1(stats))) + self.map_embed(lap_map)
        return out.to(patches.dtype)


class PhysicsTokens(nn.Module):
    """Whole-slice physics measures (mediqa_cli.physics) as one token per measure.

    Token f = value_f * w_f + e_f, or a learned "missing" vector m_f + e_f where the measure is
    undefined (NaN), as numerical features enter tabular transformers (Gorishniy et al.,
    "Revisiting deep learning models for tabular data", NeurIPS 2021). One token per measure
    rather than one mixed vector: the queries can attend to the noise floor of an MR slice and to
    the block grid of a JPEG separately, and learn per modality which measure to trust.
    """

    def __init__(self, n_features: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_features, width) * 0.02)
        self.embed = nn.Parameter(torch.randn(n_features, width) * 0.02)
        self.missing = nn.Parameter(torch.zeros(n_features, width))

    def forward(self, physics: Tensor) -> Tensor:
        """(S, F) measures -> (S, F, width) tokens; values are clamped to [-8, 8]."""
        physics = physics.to(self.weight.dtype)
        missing = torch.isnan(physics).unsqueeze(-1)
        value = torch.nan_to_num(physics, nan=0.0).clamp(-8.0, 8.0).unsqueeze(-1)
        tokens = value * self.weight + self.embed
        return torch.where(missing, self.missing + self.embed, tokens)


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
    "PatchPhysics",
    "SpacingEmbedding",
    "packed_attention",
]
