"""Packing slices into one batch and planning batches under a token budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.packing import pack, plan_batches, sequence_tokens
from mediqa_cli.model.prompts import PromptRequest
from mediqa_cli.preprocess import patchify

CFG = ModelConfig.tiny()
P = PromptRequest(0, "dicom-tag", 2, "dicom-tag")


def _item(rows: int, cols: int):
    return patchify(np.zeros((rows, cols, 3), dtype=np.float32), (1.0, 2.0))


def test_pack_builds_cu_seqlens_and_tensor_contracts() -> None:
    items = [_item(32, 48), _item(16, 16), _item(64, 16)]
    batch = pack(items, [P] * 3, CFG)
    assert batch.cu_seqlens.dtype == torch.int32
    assert batch.cu_seqlens.tolist() == [0, 6, 7, 11]
    assert batch.max_seqlen == 6 and batch.n_slices == 3
    assert batch.patches.shape == (11, CFG.patch_dim) and batch.patches.dtype == torch.float32
    assert batch.coords.shape == (11, 2) and float(batch.coords.max()) < 1.0
    assert batch.spacing.shape == (3, 2) and batch.spacing[0].tolist() == [1.0, 2.0]
    assert batch.modality.dtype == torch.int64 and batch.modality.tolist() == [0, 0, 0]


def test_pack_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="prompts"):
        pack([_item(16, 16)], [], CFG)
    with pytest.raises(ValueError, match="out of range"):
        pack([_item(16, 16)], [PromptRequest(99, "x", 0, "x")], CFG)
    with pytest.raises(ValueError, match="max_seqlen"):
        pack([_item(32, 32)], [P], CFG, max_seqlen=2)
    assert pack([_item(32, 32)], [P], CFG, max_seqlen=64).max_seqlen == 64


def test_plan_batches_respects_the_token_budget_and_keeps_order() -> None:
    counts = [100, 30, 200, 5, 5, 400, 60]
    budget = 256
    batches = plan_batches(counts, budget, CFG)
    assert [i for b in batches for i in b] == list(range(len(counts)))
    for b in batches:
        cost = sum(sequence_tokens(counts[i], CFG) for i in b)
        assert cost <= budget or len(b) == 1  # an oversize slice runs alone, it is never dropped
    assert [5] in batches
