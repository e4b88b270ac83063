"""Triton varlen attention in the interpreter against the twins (run by test_kernels_triton_*.py).

Not collected by the normal run (no test_ prefix): it needs TRITON_INTERPRET=1 before Triton is
imported, and a wrong mask can segfault the interpreter, so it runs in its own process.
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 (run via test_kernels_triton_interpreter.py)",
                allow_module_level=True)  # fmt: skip

import mediqa_kernels
from mediqa_kernels import _backend
from mediqa_kernels import triton_varlen_attention as tva

from tests.kernels.cases import LENGTH_CASES, packed_qkv, sequence_lse, tolerances


def _grad_out(like: torch.Tensor) -> torch.Tensor:
    return torch.randn(like.shape, generator=torch.Generator().manual_seed(1)).to(like.dtype)


@pytest.mark.parametrize("case", sorted(LENGTH_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_forward_matches_reference_and_lse(case: str, dtype: torch.dtype) -> None:
    q, k, v, cu, max_len = packed_qkv(LENGTH_CASES[case], dtype=dtype)
    out, lse = tva.forward(q, k, v, cu, max_len, 0.25)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu, softmax_scale=0.25)
    torch.testing.assert_close(out.float(), ref.float(), **tolerances(dtype))
    torch.testing.assert_close(lse, sequence_lse(q, k, cu, 0.25), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_triton_forward_handles_larger_head_dims(head_dim: int) -> None:
    q, k, v, cu, max_len = packed_qkv([17, 3], head_dim=head_dim, dtype=torch.float16)
    out, _ = tva.forward(q, k, v, cu, max_len, head_dim**-0.5)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu)
    torch.testing.assert_close(out.float(), ref.float(), **tolerances(torch.float16))


def test_triton_forward_bf16_upcasts_and_matches_reference() -> None:
    q, k, v, cu, max_len = packed_qkv([15, 16, 17], dtype=torch.bfloat16)
    out, _ = tva.forward(q, k, v, cu, max_len, 0.25)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu, softmax_scale=0.25)
    torch.testing.assert_close(out.float(), ref.float(), **tolerances(torch.bfloat16))


def test_triton_forward_reads_strided_fused_qkv_views() -> None:
    qkv = torch.randn(33, 3, 2, 32, generator=torch.Generator().manual_seed(2))
    q, k, v = qkv.unbind(1)
    cu = torch.tensor([0, 16, 33], dtype=torch.int32)
    out, _ = tva.forward(q, k, v, cu, 17, 0.2)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu, softmax_scale=0.2)
    torch.testing.assert_close(out, ref, **tolerances(torch.float32))


@pytest.mark.parametrize("case", sorted(LENGTH_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_backward_matches_autograd_through_reference(case: str, dtype: torch.dtype) -> None:
    q, k, v, cu, max_len = packed_qkv(LENGTH_CASES[case], dtype=dtype, requires_grad=True)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu, softmax_scale=0.25)
    grad_out = _grad_out(ref)
    want = torch.autograd.grad(ref, (q, k, v), grad_out)
    out, lse = tva.forward(q.detach(), k.detach(), v.detach(), cu, max_len, 0.25)
    got = tva.backward(grad_out, q.detach(), k.detach(), v.detach(), out, lse, cu, max_len, 0.25)
    for name, g, w in zip("qkv", got, want):
        torch.testing.assert_close(g.float(), w.float(), **tolerances(dtype), msg=f"d{name}")


def test_op_autograd_runs_triton_forward_and_backward() -> None:
    q, k, v, cu, max_len = packed_qkv([1, 20, 0, 9], requires_grad=True)
    assert _backend.use_triton(q)  # TRITON_INTERPRET=1 routes CPU tensors to the kernels
    out = mediqa_kernels.varlen_attention(q, k, v, cu, max_len)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu)
    grad_out = _grad_out(out)
    got = torch.autograd.grad(out, (q, k, v), grad_out)
    want = torch.autograd.grad(ref, (q, k, v), grad_out)
    torch.testing.assert_close(out, ref, **tolerances(torch.float32))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **tolerances(torch.float32))


def test_triton_matches_grouped_cpu_twin() -> None:
    from mediqa_kernels.varlen_attention import _twin_backward, _twin_forward

    q, k, v, cu, max_len = packed_qkv(LENGTH_CASES["one_long_many_short"])
    bounds = cu.tolist()
    out, lse = tva.forward(q, k, v, cu, max_len, 0.3)
    twin_out, twin_lse = _twin_forward(q, k, v, bounds, 0.3)
    torch.testing.assert_close(out, twin_out, **tolerances(torch.float32))
    torch.testing.assert_close(lse, twin_lse, **tolerances(torch.float32))
    dout = _grad_out(out)
    got = tva.backward(dout, q, k, v, out, lse, cu, max_len, 0.3)
    want = _twin_backward(dout, q, k, v, twin_out, twin_lse, bounds, 0.3)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **tolerances(torch.float32))


def test_triton_empty_batch_launches_nothing() -> None:
    q = torch.zeros(0, 2, 32)
    out, lse = tva.forward(q, q, q, torch.zeros(1, dtype=torch.int32), 0, 0.2)
    assert out.shape == (0, 2, 32) and lse.shape == (2, 0)


def test_opcheck_on_the_triton_path() -> None:
    q, k, v, cu, max_len = packed_qkv([5, 17], requires_grad=True)
    torch.library.opcheck(torch.ops.mediqa.varlen_attention.default, (q, k, v, cu, max_len, None))
