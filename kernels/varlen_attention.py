"""Variable-length (packed) non-causal attention as the torch op ``mediqa::varlen_attention``.

The model packs slices of different sizes into one batch without padding; ``cu_seqlens`` marks
where each sequence starts. Attention never crosses a sequence boundary.

Op layout (one public op, two private ones that carry autograd):

- ``mediqa::varlen_attention(q, k, v, cu_seqlens, max_seqlen, softmax_scale=None) -> out`` is
  CompositeImplicitAutograd: it resolves the default scale and calls the forward op. Eager,
  TorchScript, ``torch.compile`` and ``torch.export`` all reach it through ``torch.ops.mediqa``.
- ``mediqa::varlen_attention_forward(...) -> (out, lse)`` keeps the log-sum-exp so the backward
  need not recompute the softmax normaliser (flash-attention's trick). CPU: the grouped twin
  below; CUDA: Triton. Its autograd formula calls
- ``mediqa::varlen_attention_backward(...) -> (dq, dk, dv)``, CPU twin / CUDA Triton.

Every Triton kernel has a PyTorch twin here: ``varlen_attention_reference`` (a plain
per-sequence SDPA loop, what the tests trust) and the grouped twin (``_twin_forward`` /
``_twin_backward``), which batches sequences of similar length with a key mask so many short
sequences cost a handful of batched matmuls instead of one Python iteration each.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import _backend
from ._validation import check_attention_meta, check_attention_values

# Score-matrix elements (fp32) one twin group may hold: 2**23 * 4 B = 32 MiB.
_MAX_GROUP_SCORES = 1 << 23
# A group may pad its sequences up to this much extra work (relative) plus a constant that lets
# tiny sequences share a group: a batched matmul beats a Python iteration long before that.
_PAD_WASTE = 1.3
_PAD_SLACK = 1 << 14
# PyTorch's fused CPU flash-attention kernel returns the log-sum-exp we need for the backward;
# it is a private aten op, so the explicit-math path below stays as the fallback.
_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _default_scale(head_dim: int, softmax_scale: float | None) -> float:
    return float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(head_dim)


# ---------------------------------------------------------------------------------------------
# Reference twin: the definition the tests compare against.


def varlen_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Per-sequence ``F.scaled_dot_product_attention`` in fp32, cast back to q's dtype.

    Slow when there are many sequences (one Python iteration each) but obviously right, and
    differentiable through plain autograd, so tests use it for values and gradients.
    """
    scale = _default_scale(q.shape[-1], softmax_scale)
    outs = []
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end == start:
            continue
        qs, ks, vs = (t[start:end].float().transpose(0, 1) for t in (q, k, v))
        outs.append(F.scaled_dot_product_attention(qs, ks, vs, scale=scale).transpose(0, 1))
    if not outs:
        return q.new_empty(q.shape)
    return torch.cat(outs).to(q.dtype)


# ---------------------------------------------------------------------------------------------
# Grouped twin: the CPU implementation of the ops.


def _groups(bounds: list[int], heads: int) -> list[tuple[list[int], list[int], int]]:
    """Group non-empty sequences of similar length: [(starts, lengths, padded_len), ...].

    Sorted by length, a group grows while padding to its longest member adds at most
    ``_PAD_WASTE`` relative work (plus ``_PAD_SLACK``) and its scores fit ``_MAX_GROUP_SCORES``.
    """
    seqs = sorted(
        ((hi - lo, lo) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo),
        key=lambda item: item[0],
    )
    groups: list[tuple[list[int], list[int], int]] = []
    starts: list[int] = []
    lengths: list[int] = []
    work = 0
    for length, start in seqs:
        if starts:
            padded = (len(starts) + 1) * length * length
            fits = padded * heads <= _MAX_GROUP_SCORES
            if fits and padded <= _PAD_WASTE * (work + length * length) + _PAD_SLACK:
                starts.append(start)
                lengths.append(length)
                work += length * length
                continue
            groups.append((starts, lengths, lengths[-1]))
        starts, lengths, work = [start], [length], length * length
    if starts:
        groups.append((starts, lengths, lengths[-1]))
    return groups


def _gather(
    starts: list[int], lengths: list[int], padded: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (G, L) into the packed tensors and the validity mask (G, L).

    Padding slots point at their sequence's first row (always a valid read); callers mask them.
    """
    start_t = torch.tensor(starts, device=device)
    len_t = torch.tensor(lengths, device=device)
    pos = torch.arange(padded, device=device)
    valid = pos[None, :] < len_t[:, None]
    rows = torch.where(valid, start_t[:, None] + pos[None, :], start_t[:, None])
    return rows, valid


def _heads_first(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(total, H, D)[rows (G, L)] -> (G, H, L, D) fp32."""
    return t[rows].float().transpose(1, 2)


def _math_attention(
    qg: torch.Tensor, kg: torch.Tensor, vg: torch.Tensor, valid: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked softmax attention on (G, H, L, D) fp32: (out (G, H, L, D), lse (G, H, L))."""
    scores = torch.matmul(qg, kg.transpose(-1, -2)).mul_(scale)
    scores.masked_fill_(~valid[:, None, None, :], float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True)
    probs = scores.sub_(row_max).exp_()
    denom = probs.sum(dim=-1, keepdim=True)
    probs.div_(denom)
    return torch.matmul(probs, vg), (row_max + denom.log()).squeeze(-1)


def _twin_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bounds: list[int],
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped fp32 attention; returns (out like q, lse (heads, total) fp32, natural log)."""
    total, heads, dim = q.shape
    out = torch.empty((total, heads, dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((heads, total), dtype=torch.float32, device=q.device)
    for starts, lengths, padded in _groups(bounds, heads):
        if _is_dense_block(starts, lengths, padded):
            _dense_block_forward(q, k, v, out, lse, starts[0], len(starts), padded, scale)
            continue
        rows, valid = _gather(starts, lengths, padded, q.device)
        qg, kg, vg = (_heads_first(t, rows) for t in (q, k, v))
        if _CPU_FLASH is not None and q.device.type == "cpu":
            bias = torch.zeros(valid.shape[0], 1, 1, padded, device=q.device)
            bias.masked_fill_(~valid[:, None, None, :], float("-inf"))
            og, lse_g = _CPU_FLASH(qg, kg, vg, attn_mask=bias, scale=scale)
        else:
            og, lse_g = _math_attention(qg, kg, vg, valid, scale)
        flat = rows[valid]
        out[flat] = og.transpose(1, 2)[valid].to(q.dtype)
        lse[:, flat] = lse_g.transpose(1, 2)[valid].T
    return out, lse


def _is_dense_block(starts: list[int], lengths: list[int], padded: int) -> bool:
    """Equal-length sequences lying back to back: the common case of slices of one volume."""
    return all(n == padded for n in lengths) and all(
        start == starts[0] + i * padded for i, start in enumerate(starts)
    )


def _dense_block_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    first: int,
    count: int,
    length: int,
    scale: float,
) -> None:
    """A back-to-back block of equal sequences as strided views: no gather, no mask, no scatter."""
    stop = first + count * length
    heads, dim = q.shape[1], q.shape[2]
    qg, kg, vg = (
        t[first:stop].float().view(count, length, heads, dim).transpose(1, 2) for t in (q, k, v)
    )
    if _CPU_FLASH is not None and q.device.type == "cpu":
        og, lse_g = _CPU_FLASH(qg, kg, vg, scale=scale)
    else:
        valid = torch.ones(count, length, dtype=torch.bool, device=q.device)
        og, lse_g = _math_attention(qg, kg, vg, valid, scale)
    out[first:stop] = og.transpose(1, 2).reshape(count * length, heads, dim).to(q.dtype)
    lse[:, first:stop] = lse_g.permute(1, 0, 2).reshape(heads, count * length)


def _twin_backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    bounds: list[int],
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flash-attention backward in fp32, grouped like the forward.

    With P = exp(S - lse): dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)),
    dQ = scale * dS K, dK = scale * dS^T Q. Padding rows get dO = 0, so they add nothing.
    """
    total, heads, _ = q.shape
    dq, dk, dv = (torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    for starts, lengths, padded in _groups(bounds, heads):
        rows, valid = _gather(starts, lengths, padded, q.device)
        qg, kg, vg, og = (_heads_first(t, rows) for t in (q, k, v, out))
        dog = _heads_first(dout, rows).masked_fill_(~valid[:, None, :, None], 0.0)
        lse_g = lse[:, rows].transpose(0, 1)  # (G, H, L)
        scores = torch.matmul(qg, kg.transpose(-1, -2)).mul_(scale)
        scores.masked_fill_(~valid[:, None, None, :], float("-inf"))
        probs = scores.sub_(lse_g[..., None]).exp_()
        dvg = torch.matmul(probs.transpose(-1, -2), dog)
        dprobs = torch.matmul(dog, vg.transpose(-1, -2))
        delta = (dog * og).sum(dim=-1, keepdim=True)
        dscores = probs.mul_(dprobs.sub_(delta)).mul_(scale)
        dqg = torch.matmul(dscores, kg)
        dkg = torch.matmul(dscores.transpose(-1, -2), qg)
        flat = rows[valid]
        for dst, src in ((dq, dqg), (dk, dkg), (dv, dvg)):
            dst[flat] = src.transpose(1, 2)[valid].to(q.dtype)
    return dq, dk, dv


def varlen_attention_twin(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The grouped PyTorch twin of the Triton forward: (out, lse) without going through the op."""
    check_attention_meta(q, k, v, cu_seqlens, max_seqlen, softmax_scale)
    bounds = check_attention_values(cu_seqlens, q.shape[0], max_seqlen)
    return _twin_forward(q, k, v, bounds, _default_scale(q.shape[-1], softmax_scale))


# ---------------------------------------------------------------------------------------------
# Op registration.


# Registered with the low-level torch.library API: ``torch.library.custom_op`` wraps every
# kernel call in ``torch._disable_dynamo``, which imports torch._dynamo and, through it, Triton on
# the first CPU call; the CPU path must not need Triton.
_LIB = torch.library.Library("mediqa", "FRAGMENT")
_LIB.define(
    "varlen_attention(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, int max_seqlen, "
    "float? softmax_scale=None) -> Tensor"
)
_LIB.define(
    "varlen_attention_forward(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, int max_seqlen, "
    "float softmax_scale) -> (Tensor out, Tensor softmax_lse)"
)
_LIB.define(
    "varlen_attention_backward(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, "
    "Tensor softmax_lse, Tensor cu_seqlens, int max_seqlen, float softmax_scale) "
    "-> (Tensor dq, Tensor dk, Tensor dv)"
)


def _forward_impl(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU and CUDA: Triton for CUDA tensors (and CPU ones under TRITON_INTERPRET=1), else the
    grouped twin."""
    check_attention_meta(q, k, v, cu_seqlens, max_seqlen, softmax_scale)
    bounds = check_attention_values(cu_seqlens, q.shape[0], max_seqlen)
    if _backend.use_triton(q):
        return _backend.triton_attention().forward(q, k, v, cu_seqlens, max_seqlen, softmax_scale)
    return _twin_forward(q, k, v, bounds, softmax_scale)


def _forward_fake(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    check_attention_meta(q, k, v, cu_seqlens, max_seqlen, softmax_scale)
    total, heads, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((heads, total), dtype=torch.float32)


def _backward_impl(
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
    """CPU and CUDA: the Triton backward where the forward ran Triton, else the twin backward."""
    check_attention_meta(q, k, v, cu_seqlens, max_seqlen, softmax_scale)
    bounds = check_attention_values(cu_seqlens, q.shape[0], max_seqlen)
    if _backend.use_triton(q):
        return _backend.triton_attention().backward(
            dout, q, k, v, out, lse, cu_seqlens, max_seqlen, softmax_scale
        )
    return _twin_backward(dout, q, k, v, out, lse, bounds, softmax_scale)


def _backward_fake(
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
    check_attention_meta(q, k, v, cu_seqlens, max_seqlen, softmax_scale)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001 (torch.library callback)
    q, k, v, cu_seqlens, max_seqlen, softmax_scale = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, cu_seqlens, out, lse)
    ctx.max_seqlen = max_seqlen
    ctx.softmax_scale = softmax_scale


def _autograd_backward(ctx, dout: torch.Tensor, _dlse: torch.Tensor | None):  # noqa: ANN001
    q, k, v, cu_seqlens, out, lse = ctx.saved_tensors
    # Upstream gradients are often expanded or strided views; the kernels need dense rows.
    dq, dk, dv = torch.ops.mediqa.varlen_attention_backward(
        dout.contiguous(), q, k, v, out, lse, cu_seqlens, ctx.max_seqlen, ctx.softmax_scale
    )
    return dq, dk, dv, None, None, None


def _varlen_attention_composite(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """The public op: default scale, then the forward op (which owns autograd)."""
    scale = _default_scale(q.shape[-1], softmax_scale)
    out, _ = torch.ops.mediqa.varlen_attention_forward(q, k, v, cu_seqlens, max_seqlen, scale)
    return out


_LIB.impl("varlen_attention", _varlen_attention_composite, "CompositeImplicitAutograd")
# One implementation per op for both devices: _backend.use_triton sends every CUDA tensor to
# Triton, so the CUDA registration never reaches the twin.
for _device in ("CPU", "CUDA"):
    _LIB.impl("varlen_attention_forward", _forward_impl, _device)
    _LIB.impl("varlen_attention_backward", _backward_impl, _device)
torch.library.register_fake("mediqa::varlen_attention_forward", _forward_fake, lib=_LIB)
torch.library.register_fake("mediqa::varlen_attention_backward", _backward_fake, lib=_LIB)
torch.library.register_autograd(
    "mediqa::varlen_attention_forward",
    _autograd_backward,
    setup_context=_setup_context,
    lib=_LIB,
)


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Non-causal attention over packed variable-length sequences (``mediqa::varlen_attention``).

    Token ``i`` of sequence ``b`` (rows ``cu_seqlens[b] <= i < cu_seqlens[b + 1]``) attends to
    every token of the same sequence and to nothing else. Accumulates in fp32 whatever the input
    dtype. CUDA tensors run the Triton kernels, CPU tensors the grouped PyTorch twin; both are
    differentiable in q, k and v.

    Arguments:
        q: (total_tokens, nheads, headdim), float32 / float16 / bfloat16; headdim in {32, 64, 128};
            stride(-1) must be 1 (other strides are fine, e.g. views of a fused qkv tensor).
        k: (total_tokens, nheads, headdim), same dtype and device as q.
        v: (total_tokens, nheads, headdim), same dtype and device as q.
        cu_seqlens: (batch_size + 1,), int32, on q's device: cumulative sequence lengths,
            cu_seqlens[0] == 0, non-decreasing (zero-length sequences allowed),
            cu_seqlens[-1] == total_tokens.
        max_seqlen: int, >= the longest sequence; sizes the launch grid (Python int, so no
            device sync is needed to launch).
        softmax_scale: float > 0; scaling of QK^T before the softmax. Default 1 / sqrt(headdim).

    Returns:
        out: (total_tokens, nheads, headdim), dtype of q, contiguous.

    Raises:
        TypeError / ValueError naming the argument when shapes, dtypes, strides, devices or
        cu_seqlens are invalid (checking cu_seqlens costs one small device-to-host copy).
    """
    return torch.ops.mediqa.varlen_attention(q, k, v, cu_seqlens, max_seqlen, softmax_scale)
