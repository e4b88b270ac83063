"""Sweep the Triton attention kernels' block configs on a GPU; print each kernel's best.

The launcher (`kernels/triton_varlen_attention.py`, `_block_ladder`) uses one fixed config per
kernel and head dim, fastest first. This script is how those entries are chosen: each kernel
(forward, backward dK/dV, backward dQ) is timed alone under every config of a small grid, on a
large packed batch (kernel time, not launch overhead, decides) and on the benchmark's mixes, and
every config's output is checked against the current default's before it may win. It also splits
one fwd+bwd call at the benchmark's sizes into kernels, launch path and op dispatch.

Usage (CUDA only): python benchmarks/tune_attention.py [--head-dims 32 64] [--kernels dkdv dq]
                   [--budget-s SECONDS] [--split-only]
"""

from __future__ import annotations

import argparse
import sys
import time

import mediqa_kernels  # noqa: F401  (registers torch.ops.mediqa)
import torch
import torch.nn.functional as F
import triton.testing
from mediqa_kernels import triton_varlen_attention as tva
from triton.runtime.errors import OutOfResources

KERNELS = {
    "fwd": "_varlen_fwd_kernel",
    "dkdv": "_varlen_bwd_dkdv_kernel",
    "dq": "_varlen_bwd_dq_kernel",
}
GRID = [
    (bm, bn, warps, stages)
    for bm, bn in ((32, 64), (64, 32), (64, 64), (128, 32), (128, 64), (32, 128), (64, 128))
    for warps, stages in ((4, 2), (4, 3), (8, 2))
]
DEADLINE = [float("inf")]  # perf_counter() after which sweeps stop trying configs


def packed(lengths: list[int], heads: int, head_dim: int) -> tuple:
    gen = torch.Generator().manual_seed(0)
    total = sum(lengths)
    q, k, v, dout = (torch.randn(total, heads, head_dim, generator=gen).half().cuda()
                     for _ in range(4))  # fmt: skip
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths), 0)
    return q, k, v, dout, cu.cuda(), max(lengths)


def force(kernel: str, head_dim: int, config: tuple[int, int, int, int] | None) -> None:
    key = (KERNELS[kernel], head_dim, torch.float16, torch.cuda.current_device())
    tva._WORKING_CONFIG.pop(key, None)
    if config is not None:
        tva._WORKING_CONFIG[key] = config


def run_kernel(kernel: str, q, k, v, dout, cu, max_len, out, lse):  # noqa: ANN001, ANN201
    if kernel == "fwd":
        return tva.forward(q, k, v, cu, max_len, q.shape[-1] ** -0.5)
    return tva.backward(dout, q, k, v, out, lse, cu, max_len, q.shape[-1] ** -0.5)


def sweep(kernel: str, head_dim: int, heads: int, batches: dict[str, list[int]],
          fixed: dict[str, tuple[int, int, int, int] | None]) -> tuple[int, int, int, int]:
    """Time kernel under every GRID config (the other kernels at `fixed`); return the best."""
    for other, config in fixed.items():
        force(other, head_dim, config)
    data = {name: packed(lengths, heads, head_dim) for name, lengths in batches.items()}
    force(kernel, head_dim, None)
    reference = {}
    for name, (q, k, v, dout, cu, max_len) in data.items():
        out, lse = tva.forward(q, k, v, cu, max_len, head_dim**-0.5)
        reference[name] = (out, lse, run_kernel(kernel, q, k, v, dout, cu, max_len, out, lse))
    default = tva._block_ladder(head_dim, 2)[0]
    results = []
    for config in GRID:
        if time.perf_counter() > DEADLINE[0]:
            print(f"  {kernel} d={head_dim}: time budget spent, {len(results)} configs tried")
            break
        force(kernel, head_dim, config)
        times = {}
        try:
            for name, (q, k, v, dout, cu, max_len) in data.items():
                out, lse, want = reference[name]
                got = run_kernel(kernel, q, k, v, dout, cu, max_len, out, lse)
                for g, w in zip(got, want):
                    if g.dtype != torch.float16:
                        continue
                    err = (g.float() - w.float()).abs().max().item()
                    scale = w.float().abs().max().item()
                    if not err <= 2e-2 * max(scale, 1.0):
                        raise AssertionError(f"differs from the default config by {err:.2e}")
                times[name] = triton.testing.do_bench(
                    lambda q=q, k=k, v=v, dout=dout, cu=cu, m=max_len, o=out, s=lse:
                    run_kernel(kernel, q, k, v, dout, cu, m, o, s), warmup=5, rep=40)
        except OutOfResources:
            print(f"  {kernel} d={head_dim} {config}: out of resources")
            continue
        except Exception as exc:  # noqa: BLE001 - a config that fails to compile or run
            print(f"  {kernel} d={head_dim} {config}: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        results.append((sum(times.values()), config, times))
    if not results:
        return default
    results.sort()
    names = list(batches)
    print(f"\n{kernel}, head_dim {head_dim}, {heads} heads (ms; "
          f"{'backward = delta + dK/dV + dQ' if kernel != 'fwd' else 'forward'}):")
    print(f"{'config (BM, BN, warps, stages)':<32}" + "".join(f"{n:>18}" for n in names))
    shown = results[:6] + [r for r in results if r[1] == default and r not in results[:6]]
    for _total, config, times in shown:
        mark = " (default)" if config == default else ""
        print(f"{str(config) + mark:<32}" + "".join(f"{times[n]:>18.4f}" for n in names))
    force(kernel, head_dim, None)
    return results[0][1]


def dispatch_split(head_dim: int, heads: int) -> None:
    """Where one fwd+bwd call at the benchmark's size (16 x 512) spends its time."""
    lengths = [512] * 16
    q, k, v, dout, cu, max_len = packed(lengths, heads, head_dim)
    scale = head_dim**-0.5
    qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))

    def op() -> None:
        out = torch.ops.mediqa.varlen_attention(qg, kg, vg, cu, max_len, None)
        torch.autograd.backward(out, dout)

    def direct() -> None:
        out, lse = tva.forward(q, k, v, cu, max_len, scale)
        tva.backward(dout, q, k, v, out, lse, cu, max_len, scale)

    shaped = [t.view(16, 512, heads, head_dim).transpose(1, 2).requires_grad_(True)
              for t in (q.clone(), k.clone(), v.clone())]  # fmt: skip
    dout_dense = dout.view(16, 512, heads, head_dim).transpose(1, 2)

    def dense() -> None:
        out = F.scaled_dot_product_attention(*shaped)
        torch.autograd.backward(out, dout_dense)

    rows = {"op (autograd + dispatch)": op, "direct launches": direct, "dense SDPA (flash)": dense}
    try:
        graph = torch.cuda.CUDAGraph()
        direct()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            direct()
        rows["kernels only (CUDA graph)"] = graph.replay
    except Exception as exc:  # noqa: BLE001 - the split is still useful without the graph row
        print(f"  (no CUDA graph row: {type(exc).__name__}: {str(exc)[:80]})")
    print(f"\nfwd+bwd, 16 x 512 tokens, {heads} heads, head_dim {head_dim}:")
    times = {name: triton.testing.do_bench(fn, warmup=10, rep=100) for name, fn in rows.items()}
    for name, ms in times.items():
        print(f"  {name:<28} {ms:8.4f} ms   dense/this {times['dense SDPA (flash)'] / ms:5.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head-dims", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--kernels", nargs="+", default=["dkdv", "dq"], choices=list(KERNELS))
    parser.add_argument("--budget-s", type=float, default=None, help="stop sweeping after this")
    parser.add_argument("--split-only", action="store_true",
                        help="only split fwd+bwd into dispatch, launches and kernels; no sweep")
    args = parser.parse_args()
    if args.budget_s:
        DEADLINE[0] = time.perf_counter() + args.budget_s
    if not torch.cuda.is_available():
        print("needs CUDA", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, triton {triton.__version__}, "
          f"{torch.cuda.get_device_name(0)}; fp16")
    gen = torch.Generator().manual_seed(1)
    batches = {
        "mixed 64-1024 x96": torch.randint(64, 1025, (96,), generator=gen).tolist(),
        "equal 512 x16": [512] * 16,
        "model 10 x 1000": [1000] * 10,
    }
    for head_dim in args.head_dims:
        heads = 6 if head_dim == 32 else 4
        if args.split_only:
            dispatch_split(head_dim, heads)
            continue
        start = time.perf_counter()
        best: dict[str, tuple[int, int, int, int] | None] = {}
        for kernel in args.kernels:
            best[kernel] = sweep(kernel, head_dim, heads, batches, dict(best))
        print(f"\nbest for head_dim {head_dim}: {best} "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
        for kernel in best:
            force(kernel, head_dim, None)
        dispatch_split(head_dim, heads)
        for kernel, config in best.items():
            force(kernel, head_dim, config)
        print("with the best configs:")
        dispatch_split(head_dim, heads)
        for kernel in best:
            force(kernel, head_dim, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
