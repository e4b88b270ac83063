"""The pre-training loss: severity, quality, context and within-group ranking terms.

Multi-task loss per packed slice (see `multitask_loss`):
- physical-parameter severities (one sigmoid per family, 0..1): binary cross-entropy against the
  simulator chain's severities (soft targets; clean crops are all zeros);
- quality (0..100): smooth L1 on quality / 100 against the full-reference physics target
  (`mediqa_train.quality`, SSIM to the clean crop, times the shading term when
  `data.shading_weight` > 0; 100 for clean crops);
- context: cross-entropy of the context head's modality and anatomy logits against the true
  labels, for every slice (the context head runs before the prompt joins, so it must learn to
  name the modality and anatomy from pixels alone; metadata dropout in the batches teaches the
  later blocks to work with its guess);
- ranking (when the batches hold groups, `BatchRecipe.group_size` > 1): logistic pairwise loss
  on the quality of versions of one crop at rising severity. Quality from a single image is a
  second-order statistic a small transformer learns slowly from scratch; with the content held
  fixed inside a group, the gradient points at what the artefact changes. In 4-minute trials
  on this corpus it took the validation SRCC from about 0 to about 0.3 at equal wall time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mediqa_train.batches import TrainBatch
from mediqa_train.config import LossWeights


def multitask_loss(outputs: Sequence[torch.Tensor], batch: TrainBatch, w: LossWeights
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the severity BCE, the quality smooth-L1, the context cross-entropy and
    (when batches hold groups of versions of one crop) the within-group ranking loss."""
    severities, quality, mod_logits, anat_logits = outputs[:4]
    sev = F.binary_cross_entropy(severities.float().clamp(1e-6, 1 - 1e-6), batch.severities)
    qual = F.smooth_l1_loss(quality.float() / 100.0, batch.quality / 100.0, beta=w.quality_beta)
    ctx = context_loss(mod_logits, anat_logits, batch)
    total = w.severity * sev + w.quality * qual + w.context * ctx
    parts = {"severity": sev.item(), "quality": qual.item(), "context": ctx.item()}
    if w.rank > 0 and batch.group is not None:
        rank = ranking_loss(quality.float(), batch.quality, batch.group, w)
        total = total + w.rank * rank
        parts["rank"] = rank.item()
    parts["loss"] = total.item()
    return total, parts


def context_loss(mod_logits: torch.Tensor, anat_logits: torch.Tensor, batch: TrainBatch
                 ) -> torch.Tensor:
    """Modality + anatomy cross-entropy, averaged over the slices."""
    return (F.cross_entropy(mod_logits.float(), batch.modality)
            + F.cross_entropy(anat_logits.float(), batch.anatomy))


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor,
                 w: LossWeights) -> torch.Tensor:
    """Logistic pairwise ranking within groups: softplus(-(q_i - q_j) / rank_scale) for each
    pair of versions i, j of one crop whose targets differ by more than `rank_margin`, i the
    better one, q the 0..100 score or (`rank_on` "logit") its logit. Zero when the batch holds
    no such pair.

    Pairs under the margin are skipped: ranking every pair (by simulated level, or with soft
    labels) was tried and lost (benchmarks/RESULTS.md, "Ranking loss")."""
    same = (group[:, None] == group[None, :]) & (group[:, None] >= 0)
    better = (target[:, None] - target[None, :]) > w.rank_margin
    pairs = same & better
    if not bool(pairs.any()):
        return pred.sum() * 0.0
    if w.rank_on == "logit":
        # Why: a score near 100 moves a hundredth as much per logit as one near 50, so on
        # scores a version the network already calls clean (99.8) gets almost no gradient to
        # rank below its clean crop: darkened photographs and mild bias fields stayed at 99.8.
        # eps 1e-6 keeps the inverse finite; fp32 holds sigmoid to about 15 logits.
        pred = torch.logit(pred / 100.0, eps=1e-6)
    diff = (pred[:, None] - pred[None, :]) / w.rank_scale
    return F.softplus(-diff)[pairs].mean()


__all__ = ["context_loss", "multitask_loss", "ranking_loss"]
