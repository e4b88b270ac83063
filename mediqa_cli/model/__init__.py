"""The MedIQA scorer: config, packed-batch network, prompt resolution and verified weights.

Modules: config (hyper-parameters), layers (embeddings, packed attention blocks), prompts (prompt
bank and resolution), network (MedIQANet), packing (slices <-> packed batches), weights (files).
"""

from mediqa_cli.model.config import TASKS, ModelConfig
from mediqa_cli.model.network import MedIQANet, count_parameters
from mediqa_cli.model.packing import PackedBatch, SliceOutput, pack, plan_batches, unpack
from mediqa_cli.model.prompts import PromptRequest, ResolvedPrompt, request_for_scan, resolve_prompt
from mediqa_cli.model.weights import (
    WeightsError,
    find_installed_weights,
    load_weights,
    save_weights,
)

__all__ = [
    "TASKS",
    "MedIQANet",
    "ModelConfig",
    "PackedBatch",
    "PromptRequest",
    "ResolvedPrompt",
    "SliceOutput",
    "WeightsError",
    "count_parameters",
    "find_installed_weights",
    "load_weights",
    "pack",
    "plan_batches",
    "request_for_scan",
    "resolve_prompt",
    "save_weights",
    "unpack",
]
