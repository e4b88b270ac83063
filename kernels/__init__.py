"""MedIQA kernels: variable-length attention and fused saliency top-k as torch ops.

Importing this package registers ``torch.ops.mediqa.varlen_attention`` and
``torch.ops.mediqa.saliency_topk``. CPU tensors run PyTorch twins and never import Triton; CUDA
tensors run Triton kernels, imported on first use. With ``TRITON_INTERPRET=1`` set before import
(the tests), the Triton modules load now and the kernels run on CPU tensors in the interpreter.
"""

from __future__ import annotations

from . import _backend
from .saliency import saliency_topk, saliency_topk_reference
from .varlen_attention import varlen_attention, varlen_attention_reference

if _backend.interpreting():
    _backend.triton_attention()
    _backend.triton_saliency()

__all__ = [
    "saliency_topk",
    "saliency_topk_reference",
    "varlen_attention",
    "varlen_attention_reference",
]
