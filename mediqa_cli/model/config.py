"""Model hyper-parameters: one frozen dataclass, saved as JSON next to the weights.

The vocabularies (modalities, anatomies, families, tasks) are stored by name, not only by count,
so loading weights trained on another taxonomy fails loudly instead of mixing up prompt rows.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from mediqa_cli.physics import N_PHYSICS
from mediqa_cli.preprocess import DEFAULT_MAX_PATCHES, N_CHANNELS, PATCH
from mediqa_cli.taxonomy import ANATOMIES, MODALITIES, PHYSICAL_FAMILIES

# The task prompt: "physical" while pre-training on simulated degradations, "expert" when
# scoring and fine-tuning on expert labels. Append-only, like the taxonomy.
TASKS: tuple[str, ...] = ("expert", "physical")

HEAD_DIMS = (32, 64, 128)  # what the varlen attention kernels are built for

# Options whose trials lost (benchmarks/RESULTS.md), with the value every shipped version used.
RETIRED_KEYS: dict[str, Any] = {"slice_statistics": False, "severity_in_quality": False}


def drop_retired(data: dict[str, Any], retired: dict[str, Any], what: str) -> dict[str, Any]:
    """`data` without the retired keys that hold their old default, so configs saved before an
    option was removed still load; a retired key set to anything else is an error, because the
    code it selected no longer exists."""
    for key, default in retired.items():
        if key in data and data[key] != default:
            raise ValueError(f"{what} option {key}={data[key]!r} was removed after its trial "
                             f"(benchmarks/RESULTS.md); only {default!r} is accepted")
    return {k: v for k, v in data.items() if k not in retired}


def checked_keys(cls: type, data: dict[str, Any], retired: dict[str, Any],
                 what: str) -> dict[str, Any]:
    """`data` for dataclass `cls`: retired keys dropped (`drop_retired`), unknown keys refused."""
    from dataclasses import fields

    data = drop_retired(data, retired, what)
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(unknown)}")
    return data


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the MedIQA network. Defaults: width 192, depth 6, 6 heads of 32 (2.4M params)."""

    width: int = 192
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 3.0
    patch: int = PATCH
    channels: int = N_CHANNELS
    pos_grid: int = 32  # entries of each learned 1D position table over [0, 1]
    spacing_hidden: int = 64
    context_depth: int = 3  # blocks before the context head; prompts join after them
    patch_physics: bool = True  # per-patch noise/blur/compression statistics (PatchPhysics)
    physics_tokens: bool = False  # whole-slice physics measures as tokens (PhysicsTokens)
    # Preprocessing the weights were trained with; training and `mediqa score` both read these.
    max_patches: int = DEFAULT_MAX_PATCHES  # patch grid cap per slice before any downscale
    keep_patches: int = 256  # salient + spatial-cover patches kept per slice
    background_fraction: float = 0.25  # share of kept patches drawn across the whole slice
    modalities: tuple[str, ...] = field(default=MODALITIES)
    anatomies: tuple[str, ...] = field(default=ANATOMIES)
    families: tuple[str, ...] = field(default=PHYSICAL_FAMILIES)
    tasks: tuple[str, ...] = field(default=TASKS)

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.head_dim not in HEAD_DIMS:
            raise ValueError(f"head_dim {self.head_dim} must be one of {HEAD_DIMS}")
        if not 0 <= self.context_depth <= self.depth:
            raise ValueError(f"context_depth {self.context_depth} must be in [0, {self.depth}]")
        if self.pos_grid < 2:
            raise ValueError("pos_grid must be >= 2")
        if self.max_patches < 1 or self.keep_patches < 1:
            raise ValueError("max_patches and keep_patches must be >= 1")
        if not 0.0 <= self.background_fraction < 1.0:
            raise ValueError("background_fraction must lie in [0, 1)")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def patch_dim(self) -> int:
        return self.channels * self.patch * self.patch

    @property
    def n_queries(self) -> int:
        """Tokens prepended to each slice: context, quality score, one per physical family."""
        return 2 + len(self.families)

    @property
    def n_physics(self) -> int:
        """Whole-slice physics tokens per slice (0 when `physics_tokens` is off)."""
        return N_PHYSICS if self.physics_tokens else 0

    @property
    def unknown_modality(self) -> int:
        """Prompt row for "modality not known": the last one."""
        return len(self.modalities)

    @property
    def unknown_anatomy(self) -> int:
        return len(self.anatomies)

    def to_dict(self) -> dict[str, Any]:
        items = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Strict: unknown keys are an error, so a typo or newer format is not silently ignored.
        Options removed after their trials are accepted at the value every shipped version
        used (saved configs of that time hold them)."""
        data = drop_retired(data, RETIRED_KEYS, "model config")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        # Weights saved before PatchPhysics existed have no such key and no such tensors.
        data = {"patch_physics": False, **data}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def tiny(cls) -> ModelConfig:
        """For tests: two blocks, width 64, fast on one core."""
        return cls(width=64, depth=2, heads=2, mlp_ratio=2.0, pos_grid=8, spacing_hidden=16,
                   context_depth=1)


__all__ = ["HEAD_DIMS", "RETIRED_KEYS", "TASKS", "ModelConfig", "drop_retired"]
