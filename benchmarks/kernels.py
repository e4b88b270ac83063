"""Benchmark the mediqa kernels against the PyTorch ways of doing the same thing.

Attention (packed varlen, non-causal), forward and forward+backward, on length mixes:
    ours      torch.ops.mediqa.varlen_attention (Triton on CUDA, grouped twin on CPU)
    padded    SDPA on a zero-padded (batch, heads, max_len, dim) tensor with a key-padding mask
    nested    SDPA on jagged nested tensors
    loop      one SDPA call per sequence
    dense     (equal lengths only) plain batched SDPA, i.e. PyTorch's own flash/fused path
Saliency: torch.ops.mediqa.saliency_topk vs the reference twin (torch ops + per-segment sort).

Every row is measured in this one run, so ratios compare like with like. On a machine without a
GPU only the twins run; the Triton numbers need CUDA. Usage:

    python benchmarks/kernels.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import mediqa_kernels  # noqa: F401  (registers torch.ops.mediqa)
import torch
import torch.nn.functional as F
from mediqa_kernels import saliency_topk_reference

HEADS, HEAD_DIM = 4, 64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    """Median seconds of fn over reps runs after one warm-up run."""
    fn()
    _sync(device)
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _packed(lengths: list[int], dtype: torch.dtype, device: torch.device, grad: bool):
    gen = torch.Generator().manual_seed(0)
    total = sum(lengths)
    q, k, v = (
        torch.randn(total, HEADS, HEAD_DIM, generator=gen)
        .to(device=device, dtype=dtype)
        .requires_grad_(grad)
        for _ in range(3)
    )
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
    return q, k, v, cu.to(device)


def _methods(lengths: list[int], equal: bool):
    """name -> f(q, k, v, cu) returning the packed output (total, heads, dim)."""
    max_len = max(lengths)
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)

    def ours(q, k, v, cu):
        return torch.ops.mediqa.varlen_attention(q, k, v, cu, max_len, None)

    def padded(q, k, v, cu):
        batch, dev = len(lengths), q.device
        pos = torch.arange(max_len, device=dev)
        lens = torch.tensor(lengths, device=dev)
        valid = pos[None, :] < lens[:, None]
        rows = torch.where(valid, cu[:-1, None].long() + pos[None, :], 0)
        qp, kp, vp = (
            t[rows].masked_fill(~valid[..., None, None], 0).transpose(1, 2) for t in (q, k, v)
        )
        mask = valid[:, None, None, :].expand(batch, 1, max_len, max_len)
        out = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask)
        return out.transpose(1, 2)[valid]

    def nested(q, k, v, cu):
        offsets = cu.long()
        qn, kn, vn = (
            torch.nested.nested_tensor_from_jagged(t, offsets).transpose(1, 2) for t in (q, k, v)
        )
        return F.scaled_dot_product_attention(qn, kn, vn).transpose(1, 2).values()

    def loop(q, k, v, cu):
        outs = [
            F.scaled_dot_product_attention(
                q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1)
            ).transpose(0, 1)
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        return torch.cat(outs)

    def dense(q, k, v, cu):
        batch, n = len(lengths), lengths[0]
        shaped = (t.view(batch, n, HEADS, HEAD_DIM).transpose(1, 2) for t in (q, k, v))
        return F.scaled_dot_product_attention(*shaped).transpose(1, 2).reshape(q.shape)

    methods = {"ours": ours, "padded": padded, "nested": nested, "loop": loop}
    if equal:
        methods["dense"] = dense
    return methods


def bench_attention(
    name: str, lengths: list[int], device: torch.device, dtype: torch.dtype, reps: int
) -> list[tuple[str, str, str, float | None, str]]:
    """Rows (mix, pass, method, tokens/s or None, note) for one length mix."""
    rows = []
    total = sum(lengths)
    equal = len(set(lengths)) == 1
    ref = None
    for method, fn in _methods(lengths, equal).items():
        for mode in ("fwd", "fwd+bwd"):
            grad = mode == "fwd+bwd"
            q, k, v, cu = _packed(lengths, dtype, device, grad)
            dout = torch.randn_like(q) if grad else None

            def step(fn=fn, q=q, k=k, v=v, cu=cu, dout=dout, grad=grad):
                if grad:
                    out = fn(q, k, v, cu)
                    torch.autograd.backward(out, dout)
                    return out
                with torch.no_grad():
                    return fn(q, k, v, cu)

            try:
                if mode == "fwd":
                    with torch.no_grad():
                        got = fn(q, k, v, cu).float()
                    if method == "ours":
                        ref = got
                    elif ref is not None:
                        err = (got - ref).abs().max().item()
                        if err > (1e-3 if dtype == torch.float32 else 2e-2):
                            raise AssertionError(f"disagrees with ours by {err:.2e}")
                seconds = _time(step, device, reps)
                rows.append((name, mode, method, total / seconds, ""))
            except Exception as exc:  # noqa: BLE001 (report unsupported paths, keep going)
                rows.append((name, mode, method, None, f"{type(exc).__name__}: {exc}"[:80]))
    return rows


def bench_saliency(
    n_items: int, n_segments: int, k: int, device: torch.device, reps: int
) -> list[tuple[str, float]]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n_items, 1, 16, 16, generator=gen).to(device)
    sizes = torch.full((n_segments,), n_items // n_segments)
    sizes[-1] += n_items - int(sizes.sum())
    cu = torch.zeros(n_segments + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(sizes, 0).to(torch.int32)
    cu = cu.to(device)
    ours = torch.ops.mediqa.saliency_topk(images, cu, k)
    ref = saliency_topk_reference(images, cu, k)
    if not torch.equal(ours[1], ref[1]):
        raise AssertionError("saliency_topk disagrees with the reference ranking")
    return [
        ("ours", n_items / _time(lambda: torch.ops.mediqa.saliency_topk(images, cu, k), device,
                                 reps)),
        ("reference", n_items / _time(lambda: saliency_topk_reference(images, cu, k), device,
                                      reps)),
    ]  # fmt: skip


def _mixes(quick: bool) -> dict[str, list[int]]:
    gen = torch.Generator().manual_seed(1)
    n_mixed = 8 if quick else 24
    n_short = 64 if quick else 256
    n_equal = 4 if quick else 16
    return {
        f"mixed 64-1024 x{n_mixed}": torch.randint(64, 1025, (n_mixed,), generator=gen).tolist(),
        f"short 16-128 x{n_short}": torch.randint(16, 129, (n_short,), generator=gen).tolist(),
        f"equal 512 x{n_equal}": [512] * n_equal,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes (CPU: ~1 minute)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    reps = args.reps or (3 if args.quick else 5)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        print(f"# device: {torch.cuda.get_device_name(device)}; ours = Triton kernels, {dtype}")
    else:
        print(
            f"# device: CPU ({torch.get_num_threads()} threads); ours = the PyTorch twins, "
            f"{dtype}. The Triton kernels need a CUDA GPU: run this script there for their numbers."
        )
    print(f"# torch {torch.__version__}; heads={HEADS} head_dim={HEAD_DIM}; median of {reps}\n")

    print("| length mix | pass | method | tokens/s | ours / method | note |")
    print("|---|---|---|---:|---:|---|")
    for name, lengths in _mixes(args.quick).items():
        rows = bench_attention(name, lengths, device, dtype, reps)
        ours = {mode: tps for _, mode, method, tps, _ in rows if method == "ours"}
        for mix, mode, method, tps, note in sorted(rows, key=lambda r: (r[1], r[2] != "ours")):
            if tps is None:
                print(f"| {mix} | {mode} | {method} | n/a | n/a | {note} |")
                continue
            ratio = f"{ours[mode] / tps:.2f}x" if ours.get(mode) else "n/a"
            print(f"| {mix} | {mode} | {method} | {tps:,.0f} | {ratio} | {note} |")
        sys.stdout.flush()

    n_items = 2_000 if args.quick else 10_000
    print(f"\n| saliency_topk, {n_items} patches 1x16x16, 50 segments, k=16 | patches/s | "
          "ours / method |")  # fmt: skip
    print("|---|---:|---:|")
    sal = bench_saliency(n_items, 50, 16, device, reps)
    for method, pps in sal:
        print(f"| {method} | {pps:,.0f} | {sal[0][1] / pps:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
