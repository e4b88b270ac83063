"""The CPU implementation of mediqa::varlen_attention (grouped twin) against the SDPA reference."""

from __future__ import annotations

import importlib
import math

import mediqa_kernels
import pytest
import torch
from mediqa_kernels.varlen_attention import _groups, varlen_attention_twin

from tests.kernels.cases import LENGTH_CASES, packed_qkv, sequence_lse, tolerances


@pytest.mark.parametrize("case", sorted(LENGTH_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cpu_op_matches_per_sequence_sdpa(case: str, dtype: torch.dtype) -> None:
    q, k, v, cu, max_len = packed_qkv(LENGTH_CASES[case], dtype=dtype)
    out = mediqa_kernels.varlen_attention(q, k, v, cu, max_len)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu)
    assert out.dtype == dtype and out.shape == q.shape
    torch.testing.assert_close(out.float(), ref.float(), **tolerances(dtype))


@pytest.mark.parametrize("case", sorted(LENGTH_CASES))
def test_cpu_twin_lse_is_per_sequence_logsumexp(case: str) -> None:
    q, k, v, cu, max_len = packed_qkv(LENGTH_CASES[case], head_dim=64)
    _, lse = varlen_attention_twin(q, k, v, cu, max_len, softmax_scale=0.3)
    torch.testing.assert_close(lse, sequence_lse(q, k, cu, 0.3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", sorted(LENGTH_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cpu_op_gradients_match_autograd_through_reference(case: str, dtype: torch.dtype) -> None:
    q, k, v, cu, max_len = packed_qkv(LENGTH_CASES[case], dtype=dtype, requires_grad=True)
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = mediqa_kernels.varlen_attention(q, k, v, cu, max_len, softmax_scale=0.2)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu, softmax_scale=0.2)
    got = torch.autograd.grad(out, (q, k, v), grad_out)
    want = torch.autograd.grad(ref, (q, k, v), grad_out)
    for name, g, w in zip("qkv", got, want):
        torch.testing.assert_close(g.float(), w.float(), **tolerances(dtype), msg=f"d{name}")


def test_default_scale_is_inverse_sqrt_head_dim() -> None:
    q, k, v, cu, max_len = packed_qkv([7, 9], head_dim=128)
    default = mediqa_kernels.varlen_attention(q, k, v, cu, max_len)
    explicit = mediqa_kernels.varlen_attention(q, k, v, cu, max_len, 1 / math.sqrt(128))
    other = mediqa_kernels.varlen_attention(q, k, v, cu, max_len, 0.5)
    torch.testing.assert_close(default, explicit, atol=0, rtol=0)
    assert not torch.allclose(default, other)


def test_tokens_never_attend_across_sequences() -> None:
    q, k, v, cu, max_len = packed_qkv([6, 10])
    out = mediqa_kernels.varlen_attention(q, k, v, cu, max_len)
    k2, v2 = k.clone(), v.clone()
    k2[6:] += 5.0
    v2[6:] -= 3.0
    out2 = mediqa_kernels.varlen_attention(q, k2, v2, cu, max_len)
    torch.testing.assert_close(out[:6], out2[:6], atol=0, rtol=0)
    assert not torch.allclose(out[6:], out2[6:])


def test_strided_views_of_fused_qkv_are_accepted() -> None:
    gen = torch.Generator().manual_seed(3)
    qkv = torch.randn(40, 3, 2, 32, generator=gen)
    q, k, v = qkv.unbind(1)  # token stride 3 * heads * dim, not contiguous
    cu = torch.tensor([0, 13, 40], dtype=torch.int32)
    out = mediqa_kernels.varlen_attention(q, k, v, cu, 27)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu)
    torch.testing.assert_close(out, ref, **tolerances(torch.float32))


def test_many_short_sequences_are_grouped_into_few_batches() -> None:
    lengths = [1 + (i * 7) % 23 for i in range(300)] + [700]
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)
    groups = _groups(bounds, heads=4)
    assert len(groups) < 20
    members = sorted(start for starts, _, _ in groups for start in starts)
    assert members == sorted(bounds[:-1])  # every sequence lands in exactly one group
    q, k, v, cu, max_len = packed_qkv(lengths[:-1] + [70], heads=2)
    out = mediqa_kernels.varlen_attention(q, k, v, cu, max_len)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu)
    torch.testing.assert_close(out, ref, **tolerances(torch.float32))


@pytest.mark.parametrize("cu_list", [[0], [0, 0, 0]])
def test_empty_batch_returns_empty_output_and_gradients(cu_list: list[int]) -> None:
    q, k, v = (torch.zeros(0, 2, 32, requires_grad=True) for _ in range(3))
    cu = torch.tensor(cu_list, dtype=torch.int32)
    out = mediqa_kernels.varlen_attention(q, k, v, cu, 0)
    assert out.shape == (0, 2, 32)
    out.sum().backward()
    assert q.grad is not None and q.grad.shape == (0, 2, 32)


def test_explicit_math_fallback_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # The package re-exports the function under the module's name: fetch the module itself.
    module = importlib.import_module("mediqa_kernels.varlen_attention")
    monkeypatch.setattr(module, "_CPU_FLASH", None)
    q, k, v, cu, max_len = packed_qkv(LENGTH_CASES["one_long_many_short"])
    out, lse = varlen_attention_twin(q, k, v, cu, max_len, softmax_scale=0.3)
    ref = mediqa_kernels.varlen_attention_reference(q, k, v, cu, softmax_scale=0.3)
    torch.testing.assert_close(out, ref, **tolerances(torch.float32))
    torch.testing.assert_close(lse, sequence_lse(q, k, cu, 0.3), atol=1e-5, rtol=1e-5)
