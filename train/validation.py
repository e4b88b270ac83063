"""Scoring a network during and after pre-training: fixed validation examples, batched
prediction, and the validation metrics logged with every evaluation.

Validation examples are degraded once, with a fixed seed and metadata removed from every
prompt, so successive evaluations of one run (and runs of one seed) see the same images. The
within-ladder SRCC on the val sources, the criterion `select_best` uses, is
`mediqa_train.ladders.LadderSet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch
from mediqa_train.batches import BatchRecipe, CleanSlice, Example, ExampleMaker, collate

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet


def fixed_examples(pool: Sequence[CleanSlice], config: ModelConfig, recipe: BatchRecipe,
                   n: int, seed: int) -> list[Example]:
    """A fixed set of degraded validation examples, prompts with metadata removed."""
    val_recipe = BatchRecipe(**{**asdict(recipe), "metadata_dropout": 1.0,
                                "expert_task_fraction": 0.0})
    maker = ExampleMaker(pool, config, val_recipe)
    rng = np.random.default_rng([seed, 7])
    gen = torch.Generator().manual_seed(seed + 7)
    return [maker.example(rng, gen) for _ in range(n)]


@torch.no_grad()
def predict(model: MedIQANet, examples: Sequence[Example], device: torch.device,
            max_tokens: int = 4096) -> dict[str, np.ndarray]:
    """Model outputs for examples, batched by tokens: quality, severities, predicted ids and
    the context logits behind them."""
    model.eval()
    quality, sev, mod, ana = [], [], [], []
    i = 0
    while i < len(examples):
        chunk, used = [], 0
        while i < len(examples) and (not chunk or used + examples[i].tokens.n_tokens < max_tokens):
            chunk.append(examples[i])
            used += examples[i].tokens.n_tokens + model.n_queries
            i += 1
        b = collate(chunk, model.config).to(device)
        out = model(*b.packed.args())
        sev.append(out[0].float().cpu().numpy())
        quality.append(out[1].float().cpu().numpy())
        mod.append(out[2].float().cpu().numpy())
        ana.append(out[3].float().cpu().numpy())
    mod_logits, ana_logits = np.concatenate(mod), np.concatenate(ana)
    return {"quality": np.concatenate(quality), "severities": np.concatenate(sev),
            "modality": mod_logits.argmax(1), "anatomy": ana_logits.argmax(1),
            "modality_logits": mod_logits, "anatomy_logits": ana_logits}


def validate(model: MedIQANet, examples: Sequence[Example], device: torch.device
             ) -> dict[str, float]:
    """Quality SRCC/MAE, severity MAE and context accuracy (metadata removed) on fixed examples."""
    from scipy.stats import spearmanr

    was_training = model.training
    pred = predict(model, examples, device)
    model.train(was_training)
    target_q = np.array([e.quality for e in examples])
    target_s = np.stack([e.severities for e in examples])
    srcc = spearmanr(pred["quality"], target_q).statistic if np.ptp(target_q) > 0 else float("nan")
    return {
        "val_quality_srcc": float(srcc),
        "val_quality_mae": float(np.abs(pred["quality"] - target_q).mean()),
        "val_severity_mae": float(np.abs(pred["severities"] - target_s).mean()),
        "val_modality_acc": float(np.mean(pred["modality"]
                                          == np.array([e.modality_id for e in examples]))),
        "val_anatomy_acc": float(np.mean(pred["anatomy"]
                                         == np.array([e.anatomy_id for e in examples]))),
    }


__all__ = ["fixed_examples", "predict", "validate"]
