"""CPU against GPU, side by side in one run: scoring, the network, and pre-training steps.

1. `mediqa score` on the demo archive and on a 3D series of 512x512 slices, on the CPU and on
   CUDA (the scorer's bf16 autocast): wall time, ratio, and the largest score difference between
   the two reports (a GPU that disagrees with the CPU is a bug, not a speed-up).
2. The shipped network on packed batches of 1024-token slices: slices/s on the CPU (fp32), CUDA
   fp32 and CUDA bf16 autocast.
3. Pre-training: seconds per optimiser step (compute and waiting for data) on the CPU and on
   CUDA, same recipe, a few hundred steps each, with as many data workers as spare cores.

Usage: python benchmarks/gpu.py [--threads N] [--demo DIR] [--corpus corpus] [--train-steps N]
Needs CUDA; the CPU columns use --threads (default: every core).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from end_to_end import real_volume_series, timed  # noqa: E402

from mediqa_cli.model.packing import example_batch  # noqa: E402
from mediqa_cli.model.weights import find_installed_weights, load_weights  # noqa: E402
from mediqa_cli.runner import ScoreRequest, run_score  # noqa: E402


def score(root: Path, out: Path, device: str) -> dict[str, float]:
    """Score root on device; return {path: score} for the rows that scored."""
    code = run_score(ScoreRequest(paths=[str(root)], out=str(out), workers=0, quiet=True,
                                  device=device))
    if code not in (0, 1):
        raise SystemExit(f"mediqa score --device {device} failed with exit code {code}")
    with out.open(newline="") as fh:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(fh) if row["score"]}


def compare_scoring(trees: dict[str, Path], work: Path, repeats: int) -> None:
    print("\n== 1. mediqa score: CPU vs CUDA ==")
    print(f"{'tree':<12} {'scans':>5} {'cpu s':>8} {'cuda s':>8} {'cpu/cuda':>9} "
          f"{'max |d score|':>14}")
    for name, root in trees.items():
        cpu_scores = score(root, work / "cpu.csv", "cpu")
        cuda_scores = score(root, work / "cuda.csv", "cuda")
        if cpu_scores.keys() != cuda_scores.keys():
            raise SystemExit(f"{name}: CPU and CUDA scored different scans")
        worst = max(abs(cpu_scores[p] - cuda_scores[p]) for p in cpu_scores)
        t_cpu = timed(lambda root=root: score(root, work / "c.csv", "cpu"), repeats)
        t_cuda = timed(lambda root=root: score(root, work / "g.csv", "cuda"), repeats)
        print(f"{name:<12} {len(cpu_scores):>5} {t_cpu:>8.3f} {t_cuda:>8.3f} "
              f"{t_cpu / t_cuda:>9.2f} {worst:>14.2f}")


def compare_network(weights: Path, repeats: int) -> None:
    print("\n== 2. the shipped network on packed batches of 1000-token slices ==")
    model_cpu, _ = load_weights(weights)
    model_cuda = load_weights(weights)[0].to("cuda")

    def on_cuda(args: tuple, autocast: bool) -> Callable[[], None]:
        def run() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                model_cuda(*args)
            torch.cuda.synchronize()

        return run

    print(f"{'slices':>6} {'cpu fp32/s':>11} {'cuda fp32/s':>12} {'cuda bf16/s':>12} "
          f"{'bf16/cpu':>9}")
    for n_slices in (8, 64):
        batch = example_batch(model_cpu.config, [1000] * n_slices, seed=1)
        args_cpu, args_cuda = batch.args(), batch.to("cuda").args()
        with torch.inference_mode():
            t_cpu = timed(lambda args=args_cpu: model_cpu(*args), max(1, repeats - 1))
            t_fp32 = timed(on_cuda(args_cuda, autocast=False), repeats * 5)
            t_bf16 = timed(on_cuda(args_cuda, autocast=True), repeats * 5)
        print(f"{n_slices:>6} {n_slices / t_cpu:>11.1f} {n_slices / t_fp32:>12.1f} "
              f"{n_slices / t_bf16:>12.1f} {t_cpu / t_bf16:>9.1f}")


def step_seconds(corpus: Path, out: Path, device: str, steps: int,
                 workers: int) -> tuple[float, float]:
    """Median (compute, data-wait) seconds per pre-training step, after the first log window."""
    from mediqa_train.config import RunConfig
    from mediqa_train.pretrain import load_pool, pretrain

    run = RunConfig.load("shipped")
    # No warm start: a step costs the same from any weights, and the first stage's run folder
    # that the recipe continues from is not on a lent device.
    run = replace(run, workers=workers, val_every=10**9, ckpt_every=10**9, select_best=False,
                  init_weights=None)
    pool = load_pool(str(corpus), "train")
    pretrain(run, out, pool, None, device=device, max_steps=steps, echo=None)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed_records = [r for r in records if "step_s" in r][1:]
    return (statistics.median(r["step_s"] for r in timed_records),
            statistics.median(r["data_wait_s"] for r in timed_records))


def compare_training(corpus: Path, work: Path, steps: int) -> None:
    workers = max(1, min(12, (os.cpu_count() or 2) - 2))
    print(f"\n== 3. pre-training steps (shipped recipe, {workers} data workers) ==")
    rows: dict[str, tuple[float, float]] = {}
    for device, n in (("cpu", max(50, steps // 4)), ("cuda", steps)):
        rows[device] = step_seconds(corpus, work / f"train_{device}", device, n, workers)
    print(f"{'device':<6} {'compute s/step':>15} {'data wait s/step':>17} {'steps/s':>8}")
    for device, (compute, wait) in rows.items():
        print(f"{device:<6} {compute:>15.4f} {wait:>17.4f} {1 / (compute + wait):>8.1f}")
    cpu, gpu = (sum(rows[d]) for d in ("cpu", "cuda"))
    print(f"cuda/cpu steps per second: {cpu / gpu:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--demo", type=Path, default=None, help="a built demo archive")
    parser.add_argument("--corpus", type=Path, default=Path("corpus"))
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark compares CPU and GPU", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    weights = find_installed_weights()
    if weights is None:
        print("no weights installed", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, CPU with "
          f"{args.threads} thread(s), weights {weights}")
    work = Path(tempfile.mkdtemp(prefix="mediqa-gpu-"))
    demo = args.demo
    if demo is None:
        from mediqa_cli.demo import build_demo_tree

        demo = work / "demo"
        build_demo_tree(demo)
    trees = {"demo": demo, "3D 512x512": real_volume_series(work / "series512", side=512)}
    stages: list[tuple[str, Callable[[], None]]] = [
        ("scoring", lambda: compare_scoring(trees, work, args.repeats)),
        ("network", lambda: compare_network(weights, args.repeats)),
    ]
    if (args.corpus / "manifest.jsonl").is_file():
        stages.append(("training", lambda: compare_training(args.corpus, work, args.train_steps)))
    else:
        print(f"\n(no corpus at {args.corpus}: training steps not compared)")
    for name, stage in stages:
        start = time.perf_counter()
        stage()
        print(f"[{name}: {time.perf_counter() - start:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
