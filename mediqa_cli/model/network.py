"""MedIQANet: a pre-norm transformer over packed slices with task queries and automatic prompts.

Per slice the sequence is [context query, quality query, one query per physical family], then,
when the config asks for them, one token per whole-slice physics measure (`PhysicsTokens`,
measured on the full-resolution slice by `mediqa_cli.physics`), then the slice's patch tokens.
The first `context_depth` blocks see no prompt; the context query's output then predicts
modality and anatomy. Where a slice's prompt id is the "unknown" row, the
prediction (argmax) replaces it, all in one pass with tensor ops only (`torch.where`, no Python
branching on data). The prompt embedding is added to every token and the remaining blocks run.

The quality-score query is a learned mixture of the physical-family queries plus an offset;
`init_expert_query_from_physical` resets it to the mixture before fine-tuning on expert labels,
so that fine-tuning moves prompts, queries and heads, not the encoder.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.layers import (
    Block,
    GridPosition,
    PatchPhysics,
    PhysicsTokens,
    SpacingEmbedding,
)
from mediqa_cli.model.prompts import PromptBank


class MedIQANet(nn.Module):
    """The scorer. `forward` takes one packed batch (see model/packing.py) and returns per-slice
    (severities (S, F) in 0..1, quality (S,) in 0..100 higher better, modality logits (S, M),
    anatomy logits (S, A), modality ids used (S,), anatomy ids used (S,))."""

    def __init__(self, config: ModelConfig, initialise: bool = True) -> None:
        """`initialise` False skips the random initialisation of the linear layers and the
        family queries, for a network whose every tensor is about to be loaded (half of the
        scorer's start-up after the imports went into drawing numbers that were overwritten)."""
        super().__init__()
        self.config = config
        width, n_fam = config.width, len(config.families)
        self.n_queries = config.n_queries
        self.n_physics = config.n_physics
        self.n_families = n_fam
        self.unknown_modality = config.unknown_modality
        self.unknown_anatomy = config.unknown_anatomy
        self.patch_embed = nn.Linear(config.patch_dim, width)
        self.physics = (PatchPhysics(config.channels, config.patch, width)
                        if config.patch_physics else None)
        self.slice_physics = (PhysicsTokens(config.n_physics, width)
                              if config.physics_tokens else None)
        self.position = GridPosition(config.pos_grid, width)
        self.spacing = SpacingEmbedding(config.spacing_hidden, width)
        self.prompts = PromptBank(config)
        self.context_query = nn.Parameter(torch.randn(1, width) * 0.02)
        self.family_queries = nn.Parameter(torch.randn(n_fam, width) * 0.02)
        self.quality_offset = nn.Parameter(torch.randn(1, width) * 0.02)
        self.expert_mix = nn.Parameter(torch.zeros(n_fam))
        self.context_blocks = nn.ModuleList(
            [Block(width, config.heads, config.mlp_ratio) for _ in range(config.context_depth)]
        )
        self.blocks = nn.ModuleList(
            [Block(width, config.heads, config.mlp_ratio)
             for _ in range(config.depth - config.context_depth)]
        )
        self.context_norm = nn.LayerNorm(width)
        self.modality_head = nn.Linear(width, len(config.modalities))
        self.anatomy_head = nn.Linear(width, len(config.anatomies))
        self.norm = nn.LayerNorm(width)
        self.family_weight = nn.Parameter(torch.zeros(n_fam, width))
        self.family_bias = nn.Parameter(torch.zeros(n_fam))
        self.quality_head = nn.Linear(width, 1)
        if initialise:
            self.apply(_init_linear)
            nn.init.normal_(self.family_weight, std=0.02)

    def queries(self) -> Tensor:
        """(n_queries, width): context, quality (offset + mixture of family queries), families."""
        mix = torch.softmax(self.expert_mix, dim=0)
        mixed = (mix.unsqueeze(1) * self.family_queries).sum(0, keepdim=True)
        quality = self.quality_offset + mixed
        return torch.cat([self.context_query, quality, self.family_queries], dim=0)

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
        """Score a packed batch of S slices.

        patches (P, patch_dim) float; coords (P, 2) float patch centres in [0, 1]; spacing (S, 2)
        mm per pixel (NaN unknown); cu_seqlens (S + 1,) int32 patch offsets per slice; max_seqlen:
        most patches in one slice; modality, anatomy, task (S,) int64 prompt ids (the "unknown"
        row = len(vocab) asks the context head); physics (S, N_PHYSICS) whole-slice measures, NaN
        where undefined (ignored unless the config has `physics_tokens`).
        """
        n_q = self.n_queries
        n_lead = n_q + self.n_physics  # tokens before each slice's patches
        n_patches = patches.shape[0]
        n_seq = cu_seqlens.shape[0] - 1
        device = patches.device
        cu = cu_seqlens.to(torch.int64)
        patch_idx = torch.arange(n_patches, device=device)
        patch_seq = torch.searchsorted(cu[1:], patch_idx, right=True)
        # Queries (and physics tokens) go first: slice i owns [cu[i] + i*L, cu[i+1] + (i+1)*L).
        cu_full = cu + torch.arange(n_seq + 1, device=device) * n_lead
        patch_pos = patch_idx + (patch_seq + 1) * n_lead
        lead_pos = cu_full[:-1].unsqueeze(1) + torch.arange(n_lead, device=device)
        query_pos = lead_pos[:, :n_q].reshape(-1)
        n_tokens = n_patches + n_seq * n_lead
        seq_of_token = torch.searchsorted(
            cu_full[1:], torch.arange(n_tokens, device=device), right=True
        )

        tok = self.patch_embed(patches) + self.position(coords) + self.spacing(spacing)[patch_seq]
        # repeat, not expand + reshape: the reshape would branch on n_seq == 1 under export.
        qry = self.queries().to(tok.dtype).repeat(n_seq, 1)  # (S * Q, width)
        if self.slice_physics is not None:
            phys = self.slice_physics(physics).to(tok.dtype).reshape(-1, tok.shape[1])
            qry = torch.cat([qry.view(n_seq, n_q, -1), phys.view(n_seq, self.n_physics, -1)],
                            dim=1).reshape(-1, tok.shape[1])
        if self.physics is not None:
            tok = tok + self.physics(patches)
        x = tok.new_zeros(n_tokens, tok.shape[1])
        x = x.index_copy(0, patch_pos, tok).index_copy(0, lead_pos.reshape(-1), qry)

        cu32 = cu_full.to(torch.int32)
        max_len = max_seqlen + n_lead
        for block in self.context_blocks:
            x = block(x, cu32, max_len)

        ctx = self.context_norm(x[query_pos.view(n_seq, n_q)[:, 0]])
        modality_logits = self.modality_head(ctx)
        anatomy_logits = self.anatomy_head(ctx)
        modality_used = context_used(modality, modality_logits, self.unknown_modality)
        anatomy_used = context_used(anatomy, anatomy_logits, self.unknown_anatomy)
        prompt = self.prompts(modality_used, anatomy_used, task)
        x = x + prompt.to(x.dtype)[seq_of_token]

        for block in self.blocks:
            x = block(x, cu32, max_len)

        out = self.norm(x[query_pos]).view(n_seq, n_q, -1)
        fam = out[:, 2:]
        severities = torch.sigmoid((fam * self.family_weight.to(fam.dtype)).sum(-1)
                                   + self.family_bias.to(fam.dtype))
        quality = 100.0 * torch.sigmoid(self.quality_head(out[:, 1]).squeeze(1))
        return (severities, quality, modality_logits, anatomy_logits, modality_used,
                anatomy_used)

    @torch.jit.unused
    @torch.no_grad()
    def init_expert_query_from_physical(self, mix: Tensor | None = None) -> None:
        """Before expert fine-tuning: make the quality query the mixture of the physical ones.

        mix: (F,) non-negative weights of the families (e.g. from regressing expert scores on the
        pre-trained severities); uniform when None. The quality head starts as "100 minus the
        mixed severity": its weights are minus the mixed family head weights.
        """
        n_fam = self.n_families
        w = torch.full((n_fam,), 1.0 / n_fam) if mix is None else mix.detach().float().clamp_min(0)
        if w.shape != (n_fam,) or float(w.sum()) <= 0:
            raise ValueError(f"mix must be ({n_fam},) with a positive sum")
        w = w / w.sum()
        self.expert_mix.copy_(w.clamp_min(1e-6).log().to(self.expert_mix.dtype))
        self.quality_offset.zero_()
        self.quality_head.weight.copy_(-(w.unsqueeze(1) * self.family_weight).sum(0, keepdim=True))
        self.quality_head.bias.copy_(-(w * self.family_bias).sum().reshape(1))

    @torch.jit.unused
    def fine_tune_parameters(self) -> list[nn.Parameter]:
        """Prompts, queries and heads: what expert fine-tuning should train."""
        modules = [self.prompts, self.context_norm, self.modality_head, self.anatomy_head,
                   self.norm, self.quality_head]
        if self.slice_physics is not None:  # a site's readers may weigh the measures otherwise
            modules.append(self.slice_physics)
        params = [self.context_query, self.family_queries, self.quality_offset, self.expert_mix,
                  self.family_weight, self.family_bias]
        for module in modules:
            params.extend(module.parameters())
        return params

    @torch.jit.unused
    def freeze_encoder(self) -> None:
        """requires_grad=False on everything but `fine_tune_parameters`."""
        keep = {id(p) for p in self.fine_tune_parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in keep)


def context_used(requested: Tensor, scores: Tensor, unknown: int) -> Tensor:
    """The prompt id each slice runs with: its request, or the context guess (argmax of scores)
    where the request is the "unknown" row (or beyond)."""
    return torch.where(requested >= unknown, scores.argmax(dim=1), requested)


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MedIQANet", "context_used", "count_parameters"]
