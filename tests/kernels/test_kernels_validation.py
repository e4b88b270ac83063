"""Bad inputs to the mediqa ops raise errors that name the problem, never garbage or a crash."""

from __future__ import annotations

from collections.abc import Callable

import mediqa_kernels
import pytest
import torch

from tests.kernels.cases import cu_from_lengths, packed_qkv


def _attention_args() -> dict[str, object]:
    q, k, v, cu, max_len = packed_qkv([3, 5])
    return {"q": q, "k": k, "v": v, "cu_seqlens": cu, "max_seqlen": max_len}


def _set(**changes: Callable[[dict[str, object]], object]) -> Callable[[], dict[str, object]]:
    def build() -> dict[str, object]:
        args = _attention_args()
        for key, make in changes.items():
            args[key] = make(args)
        return args

    return build


ATTENTION_CASES = {
    "integer_q": (_set(q=lambda a: a["q"].to(torch.int32)), TypeError, "q must be float32"),
    "float64_v": (_set(v=lambda a: a["v"].double()), TypeError, "v must be float32"),
    "mixed_dtypes": (_set(k=lambda a: a["k"].half()), TypeError, "same dtype"),
    "head_dim_not_contiguous": (
        _set(q=lambda a: a["q"].transpose(1, 2).contiguous().transpose(1, 2)),
        ValueError,
        "contiguous in head_dim",
    ),
    "two_dim_q": (_set(q=lambda a: a["q"].flatten(1)), ValueError, "total_tokens, heads"),
    "shape_mismatch": (_set(k=lambda a: a["k"][:-1]), ValueError, "same shape"),
    "head_dim_48": (
        _set(**{name: (lambda a: torch.randn(8, 2, 48)) for name in "qkv"}),
        ValueError,
        "head_dim must be one of",
    ),
    "int64_cu_seqlens": (
        _set(cu_seqlens=lambda a: a["cu_seqlens"].long()),
        TypeError,
        "cu_seqlens must be int32",
    ),
    "cu_seqlens_not_monotone": (
        _set(cu_seqlens=lambda a: torch.tensor([0, 5, 3, 8], dtype=torch.int32)),
        ValueError,
        "non-decreasing",
    ),
    "cu_seqlens_short_of_total": (
        _set(cu_seqlens=lambda a: torch.tensor([0, 3, 7], dtype=torch.int32)),
        ValueError,
        r"cu_seqlens\[-1\] must equal",
    ),
    "cu_seqlens_not_from_zero": (
        _set(cu_seqlens=lambda a: torch.tensor([1, 3, 8], dtype=torch.int32)),
        ValueError,
        r"cu_seqlens\[0\] must be 0",
    ),
    "cu_seqlens_2d": (
        _set(cu_seqlens=lambda a: a["cu_seqlens"][None]),
        ValueError,
        "cu_seqlens must be 1-D",
    ),
    "max_seqlen_too_small": (_set(max_seqlen=lambda a: 4), ValueError, "max_seqlen=4"),
    "negative_max_seqlen": (_set(max_seqlen=lambda a: -1), ValueError, "max_seqlen"),
}


@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_varlen_attention_rejects_bad_input_with_a_clear_error(case: str) -> None:
    build, error, match = ATTENTION_CASES[case]
    with pytest.raises(error, match=match):
        mediqa_kernels.varlen_attention(**build())


def test_varlen_attention_rejects_non_positive_scale() -> None:
    with pytest.raises(ValueError, match="softmax_scale must be > 0"):
        mediqa_kernels.varlen_attention(**_attention_args(), softmax_scale=0.0)


def test_varlen_attention_checks_shapes_under_torch_compile_tracing() -> None:
    args = _attention_args()
    args["q"] = args["q"].to(torch.int32)
    compiled = torch.compile(mediqa_kernels.varlen_attention, backend="eager", fullgraph=True)
    with pytest.raises(Exception, match="q must be float32"):
        compiled(**args)


SALIENCY_CASES = {
    "integer_images": (
        lambda: (torch.zeros(4, 1, 5, 5, dtype=torch.uint8), cu_from_lengths([4]), 2),
        TypeError,
        "images must be float32",
    ),
    "three_dim_images": (
        lambda: (torch.zeros(4, 5, 5), cu_from_lengths([4]), 2),
        ValueError,
        r"\(N, C, H, W\)",
    ),
    "single_row_images": (
        lambda: (torch.zeros(4, 1, 1, 5), cu_from_lengths([4]), 2),
        ValueError,
        "H, W >= 2",
    ),
    "k_zero": (lambda: (torch.zeros(4, 1, 5, 5), cu_from_lengths([4]), 0), ValueError, "k must"),
    "int64_cu_seqlens": (
        lambda: (torch.zeros(4, 1, 5, 5), cu_from_lengths([4]).long(), 2),
        TypeError,
        "cu_seqlens must be int32",
    ),
    "cu_seqlens_past_n": (
        lambda: (torch.zeros(4, 1, 5, 5), cu_from_lengths([3, 2]), 2),
        ValueError,
        r"cu_seqlens\[-1\] must equal",
    ),
    "cu_seqlens_not_monotone": (
        lambda: (torch.zeros(4, 1, 5, 5), torch.tensor([0, 3, 1, 4], dtype=torch.int32), 2),
        ValueError,
        "non-decreasing",
    ),
}


@pytest.mark.parametrize("case", sorted(SALIENCY_CASES))
def test_saliency_topk_rejects_bad_input_with_a_clear_error(case: str) -> None:
    build, error, match = SALIENCY_CASES[case]
    with pytest.raises(error, match=match):
        mediqa_kernels.saliency_topk(*build())


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from mediqa_kernels import _validation

    reads: list[int] = []
    original = _validation.check_cu_seqlens_values

    def counting(*args: object) -> list[int]:
        reads.append(1)
        return original(*args)

    monkeypatch.setattr(_validation, "check_cu_seqlens_values", counting)
    monkeypatch.setattr(_validation, "_LAST_CHECKED", None)
    return reads


def test_one_cu_seqlens_is_read_once_across_layers_and_passes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _count_reads(monkeypatch)
    q, k, v, cu, max_len = packed_qkv([3, 5, 2], requires_grad=True)
    out = q
    for _ in range(3):  # three "layers" sharing one cu_seqlens, then their backward
        out = mediqa_kernels.varlen_attention(out, k, v, cu, max_len)
    out.sum().backward()
    assert len(reads) == 1
    mediqa_kernels.varlen_attention(q, k, v, cu.clone(), max_len)  # another tensor: read again
    assert len(reads) == 2


def test_cu_seqlens_changed_in_place_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _count_reads(monkeypatch)
    q, k, v, cu, max_len = packed_qkv([3, 5])
    mediqa_kernels.varlen_attention(q, k, v, cu, max_len)
    cu[1] = 7  # now a 7-token sequence, longer than max_seqlen=5
    with pytest.raises(ValueError, match="max_seqlen=5 is smaller than the longest sequence"):
        mediqa_kernels.varlen_attention(q, k, v, cu, max_len)
    assert len(reads) == 2


def test_inference_tensors_are_read_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _count_reads(monkeypatch)
    q, k, v, _, max_len = packed_qkv([3, 5])
    with torch.inference_mode():
        cu = cu_from_lengths([3, 5])
        for _ in range(2):
            mediqa_kernels.varlen_attention(q, k, v, cu, max_len)
    assert len(reads) == 2
