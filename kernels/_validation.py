"""Input checks for the kernels' public ops.

The Triton kernels do no bounds checking: a wrong cu_seqlens or a strided head dimension reads
someone else's memory or crashes the process. Every op entry point therefore checks its inputs
here first and raises a ValueError/TypeError that names the argument and what was expected.

Checks that need only metadata (shapes, dtypes, strides, devices) also run under FakeTensor
(torch.compile, torch.export); checks that read cu_seqlens values run in the real kernels only.
"""

from __future__ import annotations

import weakref

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
HEAD_DIMS = (32, 64, 128)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_cu_seqlens_meta(cu_seqlens: torch.Tensor, device: torch.device, name: str) -> None:
    """cu_seqlens must be a 1-D int32 tensor on the data's device with at least one entry."""
    if not isinstance(cu_seqlens, torch.Tensor):
        got = type(cu_seqlens).__name__
        raise TypeError(f"{name}: cu_seqlens must be a torch.Tensor, got {got}")
    if cu_seqlens.dtype != torch.int32:
        raise TypeError(
            f"{name}: cu_seqlens must be int32 (flash-attn convention), "
            f"got {_dtype_name(cu_seqlens.dtype)}"
        )
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError(
            f"{name}: cu_seqlens must be 1-D with batch + 1 >= 1 entries, "
            f"got shape {tuple(cu_seqlens.shape)}"
        )
    if not cu_seqlens.is_contiguous():
        raise ValueError(f"{name}: cu_seqlens must be contiguous")
    if cu_seqlens.device != device:
        raise ValueError(
            f"{name}: cu_seqlens is on {cu_seqlens.device} but the data is on {device}"
        )


def check_cu_seqlens_values(cu_seqlens: torch.Tensor, total: int, name: str) -> list[int]:
    """Check cu_seqlens[0] == 0, non-decreasing, cu_seqlens[-1] == total; return it as a list.

    One small device-to-host copy: the kernels launch one program per (block, sequence), so the
    bounds have to be right before anything reads memory through them.
    """
    bounds = [int(b) for b in cu_seqlens.tolist()]
    if bounds[0] != 0:
        raise ValueError(f"{name}: cu_seqlens[0] must be 0, got {bounds[0]}")
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        if hi < lo:
            raise ValueError(
                f"{name}: cu_seqlens must be non-decreasing, but cu_seqlens[{i + 1}]={hi} "
                f"< cu_seqlens[{i}]={lo}"
            )
    if bounds[-1] != total:
        raise ValueError(
            f"{name}: cu_seqlens[-1] must equal the number of packed rows ({total}), "
            f"got {bounds[-1]}"
        )
    return bounds


def check_attention_meta(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float | None,
) -> None:
    """Shape, dtype, stride and device checks for varlen_attention (safe on fake tensors)."""
    name = "varlen_attention"
    for label, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3:
            raise ValueError(
                f"{name}: {label} must be (total_tokens, heads, head_dim), "
                f"got shape {tuple(t.shape)}"
            )
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{name}: {label} must be float32, float16 or bfloat16, got {_dtype_name(t.dtype)}"
            )
        if t.shape[-1] > 1 and t.stride(-1) != 1:
            raise ValueError(
                f"{name}: {label} must be contiguous in head_dim (stride(-1) == 1), got strides "
                f"{tuple(t.stride())}; call .contiguous() first"
            )
    if not (q.shape == k.shape == v.shape):
        raise ValueError(
            f"{name}: q, k and v must have the same shape, got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"{name}: q, k and v must have the same dtype, got {_dtype_name(q.dtype)}, "
            f"{_dtype_name(k.dtype)}, {_dtype_name(v.dtype)}"
        )
    if not (q.device == k.device == v.device):
        raise ValueError(f"{name}: q, k and v must be on one device")
    if q.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"{name}: head_dim must be one of {HEAD_DIMS}, got {q.shape[-1]}")
    check_cu_seqlens_meta(cu_seqlens, q.device, name)
    if isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int) or max_seqlen < 0:
        raise ValueError(f"{name}: max_seqlen must be a non-negative int, got {max_seqlen!r}")
    if softmax_scale is not None and not softmax_scale > 0:
        raise ValueError(f"{name}: softmax_scale must be > 0, got {softmax_scale!r}")


# The last cu_seqlens that passed check_attention_values: (weak reference to the tensor, its
# in-place version counter, total, max_seqlen, bounds). A model passes one cu_seqlens to every
# layer, forward and backward; reading it to the host each time is a device sync per call, which
# costs more than the kernels themselves at inference batch sizes (benchmarks/RESULTS.md, GPU).
_LAST_CHECKED: tuple[weakref.ref[torch.Tensor], int, int, int, list[int]] | None = None


def check_attention_values(cu_seqlens: torch.Tensor, total: int, max_seqlen: int) -> list[int]:
    """cu_seqlens values, plus max_seqlen >= the longest sequence (else rows go unwritten).

    Returns the bounds as a list. The same tensor object, unmodified since (its version counter
    unchanged), with the same total and max_seqlen, is not read again: one host copy per batch
    instead of one per layer and pass.
    """
    global _LAST_CHECKED
    # Inference tensors keep no version counter, so an in-place change would go unseen: always
    # read those.
    version = None if cu_seqlens.is_inference() else cu_seqlens._version
    last = _LAST_CHECKED
    if (version is not None and last is not None and last[0]() is cu_seqlens
            and last[1:4] == (version, total, max_seqlen)):
        return list(last[4])
    bounds = check_cu_seqlens_values(cu_seqlens, total, "varlen_attention")
    longest = max((hi - lo for lo, hi in zip(bounds[:-1], bounds[1:])), default=0)
    if longest > max_seqlen:
        raise ValueError(
            f"varlen_attention: max_seqlen={max_seqlen} is smaller than the longest sequence "
            f"({longest})"
        )
    if version is not None:
        _LAST_CHECKED = (weakref.ref(cu_seqlens), version, total, max_seqlen, list(bounds))
    return bounds


def check_saliency_meta(images: torch.Tensor, cu_seqlens: torch.Tensor, k: int) -> None:
    """Shape, dtype and device checks for saliency_topk (safe on fake tensors)."""
    name = "saliency_topk"
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name}: images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name}: images must be float32, float16 or bfloat16 (normalised), "
            f"got {_dtype_name(images.dtype)}"
        )
    _, c, h, w = images.shape
    if c < 1 or h < 2 or w < 2:
        raise ValueError(
            f"{name}: images need C >= 1 and H, W >= 2 (gradients need two pixels), "
            f"got C={c}, H={h}, W={w}"
        )
    check_cu_seqlens_meta(cu_seqlens, images.device, name)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name}: k must be a positive int, got {k!r}")
