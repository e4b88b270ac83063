"""Triton kernels for packed variable-length attention: forward, backward, and their launchers.

Twin: ``varlen_attention.py`` (``_twin_forward`` / ``_twin_backward``, checked against the
per-sequence SDPA reference). Imported only when a CUDA tensor reaches the op, or at package
import under ``TRITON_INTERPRET=1``.

Forward (FlashAttention-2 style): one program per (query block, sequence, head). The program
reads its sequence's bounds from cu_seqlens, streams the sequence's key/value blocks through an
online softmax in base 2 (exp2 is the fast instruction), masks the tail block, and stores the
output and the natural-log log-sum-exp that the backward reuses.

Backward: delta = rowsum(dO * O) in torch, then two kernels, so no atomics are needed and the
result is deterministic: one program per (key block, sequence, head) accumulates dK and dV over
the query blocks; one program per (query block, sequence, head) accumulates dQ over the key blocks.

Precision: tiles are loaded in the input dtype and every accumulator is fp32. fp32 inputs use
IEEE fp32 dots (not TF32) so the kernel matches the twin. The interpreter computes bf16
arithmetic wrongly, so under TRITON_INTERPRET=1 bf16 tiles are upcast to fp32 right after loading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from ._backend import interpreting

_LOG2E = 1.4426950408889634
_MAX_GRID_YZ = 65535  # CUDA limit on grid dims y (sequences) and z (heads)


@triton.jit
def _varlen_fwd_kernel(
    Q, K, V, Out, Lse, CuSeqlens,
    qk_scale_log2, total_tokens,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    block_m = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2).to(tl.int64)
    start = tl.load(CuSeqlens + seq)
    seqlen = tl.load(CuSeqlens + seq + 1) - start
    if block_m * BLOCK_M >= seqlen:
        return  # this sequence is shorter than max_seqlen: nothing for this block to do

    offs_m = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < seqlen
    rows = (start + offs_m).to(tl.int64)

    q = tl.load(
        Q + rows[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
        mask=row_ok[:, None],
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running row max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running softmax denominator
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, seqlen, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < seqlen
        kv_rows = (start + cols).to(tl.int64)
        k = tl.load(
            K + kv_rows[:, None] * stride_kt + head * stride_kh + offs_d[None, :],
            mask=col_ok[:, None],
            other=0.0,
        )
        v = tl.load(
            V + kv_rows[:, None] * stride_vt + head * stride_vh + offs_d[None, :],
            mask=col_ok[:, None],
            other=0.0,
        )
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale_log2
        s = tl.where(col_ok[None, :], s, float("-inf"))
        # Every block holds at least one valid column (start_n < seqlen), so m_new is finite.
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    out = acc / l_i[:, None]
    tl.store(
        Out + rows[:, None] * stride_ot + head * stride_oh + offs_d[None, :],
        out.to(Out.dtype.element_ty),
        mask=row_ok[:, None],
    )
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural log for the caller
    tl.store(Lse + head * total_tokens + start + offs_m, lse, mask=row_ok)


@triton.jit
def _varlen_bwd_dkdv_kernel(
    Q, K, V, DO, Lse, Delta, DK, DV, CuSeqlens,
    softmax_scale, qk_scale_log2, total_tokens,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
    stride_dot, stride_doh, stride_dkt, stride_dkh, stride_dvt, stride_dvh,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """dV = P^T dO and dK = scale * dS^T Q for one key block, summed over all query blocks."""
    block_n = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2).to(tl.int64)
    start = tl.load(CuSeqlens + seq)
    seqlen = tl.load(CuSeqlens + seq + 1) - start
    if block_n * BLOCK_N >= seqlen:
        return

    offs_n = block_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    col_ok = offs_n < seqlen
    kv_rows = (start + offs_n).to(tl.int64)
    k = tl.load(
        K + kv_rows[:, None] * stride_kt + head * stride_kh + offs_d[None, :],
        mask=col_ok[:, None],
        other=0.0,
    )
    v = tl.load(
        V + kv_rows[:, None] * stride_vt + head * stride_vh + offs_d[None, :],
        mask=col_ok[:, None],
        other=0.0,
    )
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)

    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    for start_m in range(0, seqlen, BLOCK_M):
        qm = start_m + offs_m
        row_ok = qm < seqlen
        rows = (start + qm).to(tl.int64)
        q = tl.load(
            Q + rows[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
            mask=row_ok[:, None],
            other=0.0,
        )
        do = tl.load(
            DO + rows[:, None] * stride_dot + head * stride_doh + offs_d[None, :],
            mask=row_ok[:, None],
            other=0.0,
        )
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        lse = tl.load(Lse + head * total_tokens + start + qm, mask=row_ok, other=0.0)
        delta = tl.load(Delta + head * total_tokens + start + qm, mask=row_ok, other=0.0)
        # Transposed scores (keys x queries) so every dot below has its natural operand layout.
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale_log2
        p_t = tl.exp2(s_t - lse[None, :] * 1.4426950408889634)
        p_t = tl.where(col_ok[:, None] & row_ok[None, :], p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PRECISION)

    dk = dk * softmax_scale
    tl.store(
        DK + kv_rows[:, None] * stride_dkt + head * stride_dkh + offs_d[None, :],
        dk.to(DK.dtype.element_ty),
        mask=col_ok[:, None],
    )
    tl.store(
        DV + kv_rows[:, None] * stride_dvt + head * stride_dvh + offs_d[None, :],
        dv.to(DV.dtype.element_ty),
        mask=col_ok[:, None],
    )


@triton.jit
def _varlen_bwd_dq_kernel(
    Q, K, V, DO, Lse, Delta, DQ, CuSeqlens,
    softmax_scale, qk_scale_log2, total_tokens,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
    stride_dot, stride_doh, stride_dqt, stride_dqh,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """dQ = scale * dS K for one query block, summed over all key blocks."""
    block_m = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2).to(tl.int64)
    start = tl.load(CuSeqlens + seq)
    seqlen = tl.load(CuSeqlens + seq + 1) - start
    if block_m * BLOCK_M >= seqlen:
        return

    offs_m = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < seqlen
    rows = (start + offs_m).to(tl.int64)
    q = tl.load(
        Q + rows[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
        mask=row_ok[:, None],
        other=0.0,
    )
    do = tl.load(
        DO + rows[:, None] * stride_dot + head * stride_doh + offs_d[None, :],
        mask=row_ok[:, None],
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    lse = tl.load(Lse + head * total_tokens + start + offs_m, mask=row_ok, other=0.0)
    delta = tl.load(Delta + head * total_tokens + start + offs_m, mask=row_ok, other=0.0)
    lse_log2 = lse * 1.4426950408889634

    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, seqlen, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < seqlen
        kv_rows = (start + cols).to(tl.int64)
        k = tl.load(
            K + kv_rows[:, None] * stride_kt + head * stride_kh + offs_d[None, :],
            mask=col_ok[:, None],
            other=0.0,
        )
        v = tl.load(
            V + kv_rows[:, None] * stride_vt + head * stride_vh + offs_d[None, :],
            mask=col_ok[:, None],
            other=0.0,
        )
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale_log2
        p = tl.exp2(s - lse_log2[:, None])
        p = tl.where(row_ok[:, None] & col_ok[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)

    dq = dq * softmax_scale
    tl.store(
        DQ + rows[:, None] * stride_dqt + head * stride_dqh + offs_d[None, :],
        dq.to(DQ.dtype.element_ty),
        mask=row_ok[:, None],
    )


def _block_ladder(head_dim: int, itemsize: int) -> tuple[tuple[int, int, int, int], ...]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) configs for a head dim, fastest first.

    No autotuning: the interpreter cannot time configs, and the kernels are memory-light enough
    that FlashAttention-2 style defaults are close on A100/H100. Later entries need less shared
    memory: fp32 tiles are twice as big as fp16 ones, and GPUs with ~100 KB of shared memory per
    block (consumer Ampere/Ada) cannot hold the first config's pipelined tiles, so a launch that
    runs out of resources falls down the ladder (``_launch``). Under the interpreter the blocks
    shrink to 16 so tests stay fast and tail masks get exercised.
    """
    if interpreting():
        return ((16, 16, 4, 1),)
    if head_dim <= 64 and itemsize <= 2:
        first = (128, 64, 4, 3)
    elif head_dim <= 64:
        first = (64, 64, 4, 2)
    elif itemsize <= 2:
        first = (128, 32, 8, 2)
    else:
        first = (64, 32, 4, 2)
    return tuple(dict.fromkeys((first, (64, 32, 4, 2), (32, 32, 4, 1), (16, 16, 4, 1))))


# (kernel name, head_dim, dtype, device index) -> the first config of the ladder that compiled.
_WORKING_CONFIG: dict[tuple[str, int, torch.dtype, int], tuple[int, int, int, int]] = {}


def _launch(
    kernel: Any,
    grid_for: Callable[[int, int], tuple[int, int, int]],
    args: tuple[Any, ...],
    q: torch.Tensor,
    **constants: Any,
) -> None:
    """Launch kernel with the first config of the ladder that fits this GPU, and remember it.

    grid_for maps (BLOCK_M, BLOCK_N) to the launch grid.
    """
    head_dim = q.shape[-1]
    key = (kernel.fn.__name__, head_dim, q.dtype, q.device.index or 0)
    ladder = _block_ladder(head_dim, q.element_size())
    if key in _WORKING_CONFIG:
        ladder = (_WORKING_CONFIG[key],)
    for position, (block_m, block_n, warps, stages) in enumerate(ladder):
        try:
            kernel[grid_for(block_m, block_n)](
                *args, HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
                num_warps=warps, num_stages=stages, **constants,
            )  # fmt: skip
        except OutOfResources:
            if position == len(ladder) - 1:
                raise
            continue
        _WORKING_CONFIG[key] = (block_m, block_n, warps, stages)
        return


def _dot_settings(dtype: torch.dtype) -> tuple[bool, str]:
    """(upcast tiles to fp32, dot input precision) for an input dtype."""
    upcast = dtype == torch.bfloat16 and interpreting()
    precision = "ieee" if dtype == torch.float32 or upcast else "tf32"
    return upcast, precision


def _check_grid(batch: int, heads: int) -> None:
    if batch > _MAX_GRID_YZ or heads > _MAX_GRID_YZ:
        raise ValueError(
            f"varlen_attention: at most {_MAX_GRID_YZ} sequences and heads per launch, "
            f"got {batch} sequences and {heads} heads; split the batch"
        )


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel: (out like q, lse (heads, total) fp32). Inputs pre-validated."""
    total, heads, head_dim = q.shape
    batch = cu_seqlens.shape[0] - 1
    out = torch.empty((total, heads, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((heads, total), dtype=torch.float32, device=q.device)
    if total == 0 or batch == 0 or max_seqlen == 0:
        return out, lse
    _check_grid(batch, heads)
    upcast, precision = _dot_settings(q.dtype)
    _launch(
        _varlen_fwd_kernel,
        lambda block_m, _block_n: (triton.cdiv(max_seqlen, block_m), batch, heads),
        (q, k, v, out, lse, cu_seqlens,
         softmax_scale * _LOG2E, total,
         q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
         out.stride(0), out.stride(1)),
        q, UPCAST=upcast, DOT_PRECISION=precision,
    )  # fmt: skip
    return out, lse


def backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the two backward kernels: (dq, dk, dv) like q. Inputs pre-validated."""
    total, heads, head_dim = q.shape
    batch = cu_seqlens.shape[0] - 1
    dq, dk, dv = (torch.empty((total, heads, head_dim), dtype=q.dtype, device=q.device)
                  for _ in range(3))  # fmt: skip
    if total == 0 or batch == 0 or max_seqlen == 0:
        return dq, dk, dv
    if dout.stride(-1) != 1:
        dout = dout.contiguous()
    _check_grid(batch, heads)
    lse = lse.contiguous()
    # delta_i = sum_d dO_id * O_id: one fused elementwise+reduce, (heads, total) fp32.
    delta = (dout.float() * out.float()).sum(dim=-1).t().contiguous()
    upcast, precision = _dot_settings(q.dtype)
    scale_log2 = softmax_scale * _LOG2E
    _launch(
        _varlen_bwd_dkdv_kernel,
        lambda _block_m, block_n: (triton.cdiv(max_seqlen, block_n), batch, heads),
        (q, k, v, dout, lse, delta, dk, dv, cu_seqlens,
         softmax_scale, scale_log2, total,
         q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
         dout.stride(0), dout.stride(1), dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1)),
        q, UPCAST=upcast, DOT_PRECISION=precision,
    )  # fmt: skip
    _launch(
        _varlen_bwd_dq_kernel,
        lambda block_m, _block_n: (triton.cdiv(max_seqlen, block_m), batch, heads),
        (q, k, v, dout, lse, delta, dq, cu_seqlens,
         softmax_scale, scale_log2, total,
         q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
         dout.stride(0), dout.stride(1), dq.stride(0), dq.stride(1)),
        q, UPCAST=upcast, DOT_PRECISION=precision,
    )  # fmt: skip
    return dq, dk, dv


__all__ = ["backward", "forward"]
