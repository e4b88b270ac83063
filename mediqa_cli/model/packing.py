"""Pack preprocessed slices from many scans into one batch for MedIQANet, and split outputs back.

Packing concatenates patch tokens (no padding) with cu_seqlens offsets per slice. Each slice's
output depends only on its own tokens, so the order and company a slice is packed in does not
change its scores. `plan_batches` groups slices under a token budget for the engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.prompts import PromptRequest
from mediqa_cli.physics import N_PHYSICS
from mediqa_cli.preprocess import SliceTokens


@dataclass
class PackedBatch:
    """Tensors for `MedIQANet.forward`, in argument order via `args()`."""

    patches: Tensor  # (P, patch_dim) float32
    coords: Tensor  # (P, 2) float32 in [0, 1]
    spacing: Tensor  # (S, 2) float32 mm per pixel, NaN unknown
    cu_seqlens: Tensor  # (S + 1,) int32
    max_seqlen: int
    modality: Tensor  # (S,) int64
    anatomy: Tensor  # (S,) int64
    task: Tensor  # (S,) int64
    physics: Tensor  # (S, N_PHYSICS) float32 whole-slice measures, NaN undefined or not measured

    @property
    def n_slices(self) -> int:
        return int(self.cu_seqlens.shape[0]) - 1

    def args(self) -> tuple[Tensor, Tensor, Tensor, Tensor, int, Tensor, Tensor, Tensor, Tensor]:
        return (self.patches, self.coords, self.spacing, self.cu_seqlens, self.max_seqlen,
                self.modality, self.anatomy, self.task, self.physics)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> PackedBatch:
        """Move to a device; dtype, if given, applies to the float pixel tensors only."""
        return PackedBatch(
            self.patches.to(device, dtype or self.patches.dtype, non_blocking=True),
            self.coords.to(device, non_blocking=True),
            self.spacing.to(device, non_blocking=True),
            self.cu_seqlens.to(device, non_blocking=True),
            self.max_seqlen,
            self.modality.to(device, non_blocking=True),
            self.anatomy.to(device, non_blocking=True),
            self.task.to(device, non_blocking=True),
            self.physics.to(device, non_blocking=True),
        )


@dataclass
class SliceOutput:
    """One slice's model outputs (numpy, float32 unless stated)."""

    severities: np.ndarray  # (F,) in 0..1, order of config.families
    quality: float  # 0..100, higher is better
    modality_logits: np.ndarray  # (M,)
    anatomy_logits: np.ndarray  # (A,)
    modality_id: int  # prompt row used (metadata, override or predicted)
    anatomy_id: int


def pack(
    items: Sequence[SliceTokens],
    prompts: Sequence[PromptRequest],
    config: ModelConfig,
    max_seqlen: int | None = None,
) -> PackedBatch:
    """One packed batch from per-slice tokens and their prompt requests (same length).

    max_seqlen: an upper bound on patches per slice to pass instead of the actual longest (an
    exported program needs the value it was exported with); must be >= the longest slice.
    """
    if len(items) != len(prompts):
        raise ValueError(f"{len(items)} slices but {len(prompts)} prompts")
    if not items:
        raise ValueError("nothing to pack")
    for it in items:
        if it.n_tokens < 1 or it.patches.shape[1] != config.patch_dim:
            raise ValueError(
                f"slice tokens must be (n >= 1, {config.patch_dim}), got {it.patches.shape}"
            )
    counts = [it.n_tokens for it in items]
    cu = np.zeros(len(items) + 1, dtype=np.int32)
    cu[1:] = np.cumsum(counts)
    longest = max(counts)
    if max_seqlen is not None and max_seqlen < longest:
        raise ValueError(f"max_seqlen {max_seqlen} < longest slice ({longest} patches)")
    for p in prompts:
        if not (0 <= p.modality_id <= config.unknown_modality
                and 0 <= p.anatomy_id <= config.unknown_anatomy
                and 0 <= p.task_id < len(config.tasks)):
            raise ValueError(f"prompt ids out of range: {p}")
    return PackedBatch(
        patches=torch.from_numpy(np.concatenate([it.patches for it in items]).astype(np.float32)),
        coords=torch.from_numpy(np.concatenate([it.norm_coords() for it in items])),
        spacing=torch.tensor([it.spacing_mm for it in items], dtype=torch.float32),
        cu_seqlens=torch.from_numpy(cu),
        max_seqlen=longest if max_seqlen is None else max_seqlen,
        modality=torch.tensor([p.modality_id for p in prompts], dtype=torch.int64),
        anatomy=torch.tensor([p.anatomy_id for p in prompts], dtype=torch.int64),
        task=torch.tensor([p.task_id for p in prompts], dtype=torch.int64),
        physics=torch.from_numpy(np.stack([
            it.physics if it.physics is not None else np.full(N_PHYSICS, np.nan, np.float32)
            for it in items]).astype(np.float32)),
    )


def unpack(outputs: Sequence[Tensor]) -> list[SliceOutput]:
    """Split MedIQANet's per-slice output tuple into one SliceOutput per packed slice, in order."""
    sev, quality, mod_logits, anat_logits, mod_used, anat_used = (
        t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy()
        for t in outputs
    )
    return [
        SliceOutput(sev[i], float(quality[i]), mod_logits[i], anat_logits[i], int(mod_used[i]),
                    int(anat_used[i]))
        for i in range(sev.shape[0])
    ]


def sequence_tokens(n_patches: int, config: ModelConfig) -> int:
    """Tokens a slice costs in the packed sequence: its patches plus the query tokens."""
    return n_patches + config.n_queries


def plan_batches(
    token_counts: Sequence[int], max_tokens: int, config: ModelConfig
) -> list[list[int]]:
    """Group slice indices, in order, into batches of at most max_tokens sequence tokens each.

    A slice larger than max_tokens gets a batch of its own rather than being dropped.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(token_counts):
        cost = sequence_tokens(n, config)
        if current and used + cost > max_tokens:
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += cost
    if current:
        batches.append(current)
    return batches


def example_batch(config: ModelConfig, sizes: Sequence[int] = (5, 9), seed: int = 0) -> PackedBatch:
    """A small random packed batch (unknown prompts, known spacing), for tracing and tests."""
    rng = np.random.default_rng(seed)
    items = []
    for n in sizes:
        cols = max(1, int(math.ceil(math.sqrt(n))))
        grid = (int(math.ceil(n / cols)), cols)
        coords = np.stack([np.arange(n) // cols, np.arange(n) % cols], axis=1).astype(np.int64)
        patches = rng.random((n, config.patch_dim), dtype=np.float32)
        physics = rng.normal(size=N_PHYSICS).astype(np.float32)
        physics[::5] = np.nan  # some measures undefined, as on real slices
        items.append(SliceTokens(patches, coords, grid, (0.8, 0.8), physics=physics))
    prompts = [PromptRequest(config.unknown_modality, "none", config.unknown_anatomy, "none")
               for _ in sizes]
    return pack(items, prompts, config)


__all__ = [
    "PackedBatch",
    "SliceOutput",
    "example_batch",
    "pack",
    "plan_batches",
    "sequence_tokens",
    "unpack",
]
