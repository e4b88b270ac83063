"""Which implementation runs a tensor: Triton or the PyTorch twin.

Triton is optional (the `gpu` extra) and slow to import, so it is imported only when a CUDA
tensor reaches an op. Under ``TRITON_INTERPRET=1`` (the test mode) the Triton kernels run on CPU
tensors in Triton's interpreter instead of the twins, so the tests exercise the very code a GPU
would run; that variable has to be set before Triton is first imported.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch


def interpreting() -> bool:
    """True when Triton kernels should run in the CPU interpreter (tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(t: torch.Tensor) -> bool:
    """CUDA tensors go to Triton; CPU tensors only under TRITON_INTERPRET=1."""
    return t.is_cuda or (interpreting() and t.device.type == "cpu")


def triton_attention() -> ModuleType:
    """The Triton varlen attention module, imported on first use."""
    from . import triton_varlen_attention

    return triton_varlen_attention


def triton_saliency() -> ModuleType:
    """The Triton saliency module, imported on first use."""
    from . import triton_saliency

    return triton_saliency
