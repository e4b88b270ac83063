"""AdamW and its learning-rate schedule: linear warmup, then cosine decay over the budget.

The schedule's progress is max(step / steps, elapsed / time budget) when a run has a time
budget (`--max-minutes`), so a run on a busy machine still anneals to the end of its budget
instead of stopping mid-schedule. With `optim.cycles` = N > 1 the cosine runs N times over the
budget (N - 1 restarts at the full rate, no new warmup); the first cycle of such a run follows
exactly the schedule of a one-cycle run of that cycle's length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from mediqa_train.config import OptimConfig


def lr_factor(step: int, progress: float, optim: OptimConfig) -> float:
    """Linear warmup over `warmup_steps`, then cosine from 1 to `min_lr_ratio` over progress;
    with `cycles` > 1, that many equal cosines back to back (restarts without warmup: the
    optimizer state is warm)."""
    warm = min(1.0, (step + 1) / max(1, optim.warmup_steps))
    p = min(1.0, max(0.0, progress)) * optim.cycles
    within = p - min(int(p), optim.cycles - 1)
    cos = 0.5 * (1.0 + math.cos(math.pi * within))
    return warm * (optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cos)


def schedule_progress(step: int, elapsed_s: float, total_steps: int,
                      budget_s: float | None) -> float:
    """How far through its schedule a run is: max(step / steps, elapsed / time budget)."""
    p = step / max(1, total_steps)
    if budget_s:
        p = max(p, elapsed_s / budget_s)
    return p


def cycles_done(progress: float, cycles: int) -> int:
    """How many of the schedule's cosine cycles have ended at this progress."""
    return min(cycles, int(max(0.0, progress) * cycles + 1e-9))


def make_optimizer(model: torch.nn.Module, optim: OptimConfig,
                   params: Sequence[torch.nn.Parameter] | None = None) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, embeddings, queries and position tables."""
    chosen = {id(p) for p in (params if params is not None else model.parameters())}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if id(p) not in chosen or not p.requires_grad:
            continue
        plain_matrix = p.dim() == 2 and name.endswith(".weight") and "prompts." not in name
        (decay if plain_matrix else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas)


__all__ = ["cycles_done", "lr_factor", "make_optimizer", "schedule_progress"]
