"""What a pre-training run is: one JSON file in train/configs/ read into `RunConfig`.

`RunConfig` holds the network shape (`ModelConfig`), how examples are drawn (`BatchRecipe`),
the optimiser and its schedule (`OptimConfig`), the loss weights (`LossWeights`) and the run's
own settings (seed, logging, validation, which weights ship). Loading is strict: an unknown key
is an error, so a typo never trains a different recipe silently. Options removed after their
trials (benchmarks/RESULTS.md) are accepted at the value every shipped run used, because the
run configs recorded in older model cards still name them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mediqa_train.batches import BatchRecipe

from mediqa_cli.model.config import ModelConfig, checked_keys, drop_retired

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# Options whose trials lost (benchmarks/RESULTS.md), with the value every shipped run used.
RETIRED_RUN_KEYS: dict[str, Any] = {"ema_decay": 0.0}
RETIRED_LOSS_KEYS: dict[str, Any] = {"rank_by": "target"}


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + warmup + cosine; `steps` is the schedule length (see `mediqa_train.optim`)."""

    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    steps: int = 2000
    grad_clip: float = 1.0
    cycles: int = 1  # > 1: this many cosines back to back (warm restarts, snapshots)


@dataclass(frozen=True)
class LossWeights:
    severity: float = 1.0
    quality: float = 2.0
    context: float = 0.3
    rank: float = 0.0  # pairwise ranking of versions of one crop (batches with group_size > 1)
    quality_beta: float = 0.05  # smooth-L1 transition, in quality / 100 units
    rank_margin: float = 2.0  # pairs closer than this in target quality are not ranked
    rank_scale: float = 5.0  # quality points (or, rank_on "logit", score logits) per loss logit
    rank_on: str = "score"  # "score": 0..100 scores; "logit": the quality head's logits

    def __post_init__(self) -> None:
        if self.rank_on not in ("score", "logit"):
            raise ValueError(f"loss.rank_on must be 'score' or 'logit', not {self.rank_on!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything a pre-training run needs; one JSON file in train/configs/."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: BatchRecipe = field(default_factory=BatchRecipe)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    workers: int = 1
    log_every: int = 10
    ckpt_every: int = 200
    val_every: int = 200
    val_examples: int = 64
    val_ladders_per_modality: int = 0  # > 0: track within-ladder SRCC on val sources
    select_best: bool = False  # ship the weights of the best val_ladder_srcc, not the last step
    snapshot_ensemble: bool = False  # ship the weights at every cycle's end as one ensemble
    # Warm start: a weights folder (relative paths from the repository root) and the member of
    # its ensemble whose tensors the new network starts from; modules the older weights lack
    # (e.g. physics tokens) keep their fresh initialisation.
    init_weights: str | None = None
    init_member: int = 0

    def __post_init__(self) -> None:
        if self.optim.cycles < 1:
            raise ValueError(f"optim.cycles must be >= 1, got {self.optim.cycles}")
        if self.snapshot_ensemble and self.optim.cycles < 2:
            raise ValueError("snapshot_ensemble needs optim.cycles >= 2 (one snapshot per cycle)")
        if self.snapshot_ensemble and self.select_best:
            raise ValueError("snapshot_ensemble ships the cycle ends; it excludes select_best")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Strict about unknown keys; options removed after their trials are accepted at the
        value every shipped run used (run configs in older model cards hold them)."""
        data = checked_keys(cls, data, RETIRED_RUN_KEYS, "run config")
        kw: dict[str, Any] = {k: v for k, v in data.items()
                              if k not in ("model", "data", "optim", "loss")}
        if "model" in data:
            kw["model"] = ModelConfig.from_dict(data["model"])
        if "data" in data:
            kw["data"] = BatchRecipe.from_dict(data["data"])
        if "optim" in data:
            kw["optim"] = _strict(OptimConfig, data["optim"])
        if "loss" in data:
            kw["loss"] = _strict(LossWeights, drop_retired(data["loss"], RETIRED_LOSS_KEYS,
                                                           "loss"))
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"] = self.model.to_dict()
        return json.loads(json.dumps(out))  # tuples -> lists

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunConfig:
        """A config by path, or by name from train/configs/ ("shipped", "smoke")."""
        p = Path(path)
        if not p.exists() and (CONFIG_DIR / f"{path}.json").exists():
            p = CONFIG_DIR / f"{path}.json"
        return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))


def _strict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


__all__ = ["CONFIG_DIR", "LossWeights", "OptimConfig", "RunConfig"]
