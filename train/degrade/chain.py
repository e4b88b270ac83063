"""Random chains of degradations for training: `draw(modality, rng)` -> Chain.

A real bad image often has several causes at once (a noisy, slightly moved, JPEG-stored MR), so
a trainer draws 1 to 3 distinct simulators that fit the modality and applies them in the order
physics imposes (acquisition, then reconstruction/detector, then storage). Per-family severities
of the chain are combined as a noisy-or, 1 - prod(1 - s): two independent causes of the same
family are worse than either, and the result stays in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mediqa_cli.taxonomy import MODALITIES, PHYSICAL_FAMILIES

from .base import REGISTRY, Degradation, Spacing, uniform


def combine_severities(parts: list[dict[str, float]]) -> dict[str, float]:
    """Noisy-or of per-family severities over all PHYSICAL_FAMILIES (absent families are 0)."""
    out = {}
    for family in PHYSICAL_FAMILIES:
        keep = 1.0
        for part in parts:
            keep *= 1.0 - part.get(family, 0.0)
        out[family] = 1.0 - keep
    return out


@dataclass
class Chain:
    """An ordered list of (simulator, parameters) with its combined severity label."""

    steps: list[tuple[Degradation[Any], Any]] = field(default_factory=list)

    def apply(self, image: torch.Tensor, spacing: Spacing, rng: torch.Generator) -> torch.Tensor:
        """Apply every step in order (deterministic given `rng`'s seed)."""
        for simulator, params in self.steps:
            image = simulator.apply(image, spacing, params, rng)
        return image

    @property
    def severities(self) -> dict[str, float]:
        """Combined per-family severity, one entry per PHYSICAL_FAMILIES member."""
        return combine_severities([sim.severities(params) for sim, params in self.steps])

    def severity_vector(self) -> torch.Tensor:
        """The severities as a float32 vector in PHYSICAL_FAMILIES order (the training label)."""
        sev = self.severities
        return torch.tensor([sev[f] for f in PHYSICAL_FAMILIES], dtype=torch.float32)

    def record(self) -> list[dict[str, Any]]:
        """JSON-ready list of what was applied, for manifests and reproducibility."""
        return [sim.record(params) for sim, params in self.steps]


def candidates(modality: str, added: Sequence[str] = ()) -> list[str]:
    """Registry keys of the training simulators that apply to `modality`, sorted for
    determinism; `added` names simulators outside training (`in_training` False) that a recipe
    puts in for this modality."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    for name in added:
        if name not in REGISTRY or modality not in REGISTRY[name].modalities:
            raise ValueError(f"simulator {name!r} does not apply to {modality}")
    return sorted(k for k, sim in REGISTRY.items()
                  if modality in sim.modalities and (sim.in_training or k in added))


def draw(modality: str, rng: torch.Generator, max_steps: int = 3,
         severity: float | None = None, added: Sequence[str] = ()) -> Chain:
    """A random chain of 1..max_steps distinct simulators fitting `modality` (`added`: as in
    `candidates`).

    `severity` fixes every step's severity (None draws each at random).
    """
    keys = candidates(modality, added)
    n = min(len(keys), 1 + int(uniform(rng) * max_steps))
    order = torch.randperm(len(keys), generator=rng, device=rng.device).tolist()[:n]
    chosen = [REGISTRY[keys[i]] for i in order]
    chosen.sort(key=lambda sim: sim.stage)
    return Chain([(sim, sim.sample(rng, severity)) for sim in chosen])
