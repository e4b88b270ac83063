"""Several independently trained MedIQANets scored as one: the shipped model can be an ensemble.

Why: independent pre-training runs disagree on which degradation families they rank well
(benchmarks/RESULTS.md, "Pre-training trials" and "A second seed"): run-to-run variation moves
single families by 0.2-0.6 SRCC. In both measured pairs the mean of the two runs' outputs ranked
the test ladders better overall than either run (0.826, 0.795), though not on every modality.

Every member sees the same packed batch. The ensemble returns the members' mean severities and
quality, the mean of their log-softmax context outputs (so the context guess is the product of
the members' beliefs), and, where the request asked the context head, the ensemble's own guess
as the modality and anatomy used. Each member conditions its own prompt on its own guess; when
members disagree, the reported guess is the ensemble's. Forward takes and returns exactly what
MedIQANet's does, so packing, the scorer, TorchScript and torch.export need nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet, context_used


class MedIQAEnsemble(nn.Module):
    """Mean of several MedIQANets of one config (state-dict keys `members.<i>.<name>`)."""

    def __init__(self, config: ModelConfig, n_members: int, initialise: bool = True) -> None:
        super().__init__()
        if n_members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {n_members}")
        self.config = config
        self.n_queries = config.n_queries  # tokens each slice adds (budgeting, as MedIQANet)
        self.unknown_modality = config.unknown_modality
        self.unknown_anatomy = config.unknown_anatomy
        self.members = nn.ModuleList([MedIQANet(config, initialise) for _ in range(n_members)])

    @classmethod
    def of(cls, members: Sequence[MedIQANet]) -> MedIQAEnsemble:
        """An ensemble holding copies of these networks' weights (all of one config)."""
        if any(m.config != members[0].config for m in members):
            raise ValueError("ensemble members must share one model config")
        ensemble = cls(members[0].config, len(members))
        for slot, member in zip(ensemble.members, members):
            slot.load_state_dict(member.state_dict())
        return ensemble.eval()

    def forward(
        self,
        patches: Tensor,
        coords: Tensor,
        spacing: Tensor,
        cu_seqlens: Tensor,
        max_seqlen: int,
        modality: Tensor,
        anatomy: Tensor,
        task: Tensor,
        physics: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """MedIQANet.forward's inputs and outputs; see the module docstring for the averaging."""
        severities = torch.zeros(0)
        quality = torch.zeros(0)
        modality_logp = torch.zeros(0)
        anatomy_logp = torch.zeros(0)
        first = True
        for member in self.members:
            sev, q, mod_logits, anat_logits, _, _ = member(
                patches, coords, spacing, cu_seqlens, max_seqlen, modality, anatomy, task, physics)
            mod_logp = torch.log_softmax(mod_logits.float(), dim=1)
            anat_logp = torch.log_softmax(anat_logits.float(), dim=1)
            if first:
                severities, quality, modality_logp, anatomy_logp = sev, q, mod_logp, anat_logp
                first = False
            else:
                severities = severities + sev
                quality = quality + q
                modality_logp = modality_logp + mod_logp
                anatomy_logp = anatomy_logp + anat_logp
        n = float(len(self.members))
        modality_logp = modality_logp / n
        anatomy_logp = anatomy_logp / n
        modality_used = context_used(modality, modality_logp, self.unknown_modality)
        anatomy_used = context_used(anatomy, anatomy_logp, self.unknown_anatomy)
        return (severities / n, quality / n, modality_logp, anatomy_logp, modality_used,
                anatomy_used)


def members_of(model: nn.Module) -> list[MedIQANet]:
    """The networks inside a loaded model: its members, or the model itself."""
    if isinstance(model, MedIQAEnsemble):
        return list(model.members)  # type: ignore[arg-type]
    if isinstance(model, MedIQANet):
        return [model]
    raise TypeError(f"not a MedIQA model: {type(model).__name__}")


def assemble(members: Sequence[MedIQANet]) -> nn.Module:
    """One network stays itself; several become an ensemble."""
    return members[0] if len(members) == 1 else MedIQAEnsemble.of(members)


__all__ = ["MedIQAEnsemble", "assemble", "members_of"]
