"""The prompt bank and automatic prompt resolution.

A prompt is (modality, anatomy, task). Each value comes, in order of precedence, from a CLI
override, from the scan's metadata (DICOM tags, NIfTI header, file name, as the reader found it),
or, when none is known, from the model's own context head: the network is given the "unknown"
row and substitutes its prediction inside the same forward pass (see network.py). The report
shows the value used and where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from mediqa_cli.io.scan import SOURCE_NONE, SOURCE_OVERRIDE, SOURCE_PREDICTED, Scan
from mediqa_cli.model.config import ModelConfig

# A prediction this sure, against metadata it gives this little probability, is flagged.
DISAGREE_PRED_PROB = 0.9
DISAGREE_META_PROB = 0.05


class PromptBank(nn.Module):
    """Learned embeddings for modality and anatomy (each + an "unknown" row) and task.

    Their sum is added to every token of a slice after the context blocks, so fine-tuning can
    move a prompt without touching the encoder.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.modality = nn.Embedding(len(config.modalities) + 1, config.width)
        self.anatomy = nn.Embedding(len(config.anatomies) + 1, config.width)
        self.task = nn.Embedding(len(config.tasks), config.width)
        for emb in (self.modality, self.anatomy, self.task):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, modality: Tensor, anatomy: Tensor, task: Tensor) -> Tensor:
        return self.modality(modality) + self.anatomy(anatomy) + self.task(task)


@dataclass(frozen=True)
class PromptRequest:
    """What is known before the model runs: ids (the "unknown" row when not known) and sources."""

    modality_id: int
    modality_source: str
    anatomy_id: int
    anatomy_source: str
    task_id: int = 0


@dataclass(frozen=True)
class ResolvedPrompt:
    """The prompt used for a slice or scan, its sources, and the context head's own opinion.

    disagrees: metadata gave one value but the context head is confidently sure of another; the
    metadata value is still the one used (a wrong tag is for a human to check, not to overrule).
    """

    modality: str
    modality_source: str
    anatomy: str
    anatomy_source: str
    predicted_modality: str
    predicted_modality_prob: float
    predicted_anatomy: str
    predicted_anatomy_prob: float
    disagrees: bool


def _lookup(value: str | None, vocab: tuple[str, ...], what: str) -> int | None:
    """Case-insensitive index in vocab; None for None/""/"auto"; an error for unknown names."""
    if value is None or value.strip() == "" or value.strip().lower() == "auto":
        return None
    folded = {v.lower(): i for i, v in enumerate(vocab)}
    key = value.strip().lower()
    if key not in folded:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(vocab)} or auto")
    return folded[key]


def request_prompt(
    config: ModelConfig,
    modality: str | None = None,
    modality_source: str = SOURCE_NONE,
    anatomy: str | None = None,
    anatomy_source: str = SOURCE_NONE,
    modality_override: str | None = None,
    anatomy_override: str | None = None,
    task: str = "expert",
) -> PromptRequest:
    """Choose each prompt value from override > metadata > unknown (to be predicted)."""
    ids: list[tuple[int, str]] = []
    for meta, source, override, vocab, what in (
        (modality, modality_source, modality_override, config.modalities, "modality"),
        (anatomy, anatomy_source, anatomy_override, config.anatomies, "anatomy"),
    ):
        forced = _lookup(override, vocab, what)
        if forced is not None:
            ids.append((forced, SOURCE_OVERRIDE))
            continue
        try:
            known = _lookup(meta, vocab, what)
        except ValueError:  # a reader hint outside the vocabulary counts as unknown
            known = None
        ids.append((len(vocab), SOURCE_NONE) if known is None else (known, source))
    task_id = _lookup(task, config.tasks, "task")
    task_id = 0 if task_id is None else task_id
    return PromptRequest(ids[0][0], ids[0][1], ids[1][0], ids[1][1], task_id)


def request_for_scan(
    scan: Scan,
    config: ModelConfig,
    modality_override: str | None = None,
    anatomy_override: str | None = None,
    task: str = "expert",
) -> PromptRequest:
    """`request_prompt` from a Scan's hints (set by the readers) and the CLI overrides."""
    return request_prompt(config, scan.modality, scan.modality_source, scan.anatomy,
                          scan.anatomy_source, modality_override, anatomy_override, task)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max())
    return z / z.sum()


def resolve_prompt(
    request: PromptRequest,
    modality_logits: np.ndarray | Tensor,
    anatomy_logits: np.ndarray | Tensor,
    config: ModelConfig,
) -> ResolvedPrompt:
    """Name the prompt used, given the request and the context head's logits.

    Pass one slice's logits, or the mean over a scan's selected slices for a per-scan answer.
    An unknown value takes the argmax, as the network did, with source "predicted".
    """
    parts = []
    for given, source, logits, vocab in (
        (request.modality_id, request.modality_source, modality_logits, config.modalities),
        (request.anatomy_id, request.anatomy_source, anatomy_logits, config.anatomies),
    ):
        if isinstance(logits, torch.Tensor):
            logits = logits.detach().float().cpu().numpy()
        probs = _softmax(np.asarray(logits).reshape(-1))
        best = int(np.argmax(probs))
        if given >= len(vocab):
            parts.append((vocab[best], SOURCE_PREDICTED, vocab[best], float(probs[best]), False))
            continue
        disagrees = (source != SOURCE_OVERRIDE and best != given
                     and probs[best] >= DISAGREE_PRED_PROB and probs[given] <= DISAGREE_META_PROB)
        parts.append((vocab[given], source, vocab[best], float(probs[best]), bool(disagrees)))
    (mod, mod_src, mod_pred, mod_p, mod_dis), (ana, ana_src, ana_pred, ana_p, ana_dis) = parts
    return ResolvedPrompt(mod, mod_src, ana, ana_src, mod_pred, mod_p, ana_pred, ana_p,
                          mod_dis or ana_dis)


__all__ = [
    "PromptBank",
    "PromptRequest",
    "ResolvedPrompt",
    "request_for_scan",
    "request_prompt",
    "resolve_prompt",
]
