"""CPU inference variants of the shipped network, side by side: model CPU time a slice and how
far each variant moves the report's scores.

Why: after the pipeline's waste was removed, the network is the largest share of a CPU run
(benchmarks/RESULTS.md, "Speed"). Cheaper arithmetic (int8 linear layers, bf16 matmuls) is only
worth shipping if it is clearly faster and leaves the scores where they were, so both are
measured on the same slices in one process.

The slices are the model inputs of real runs: the demo archive and a generated archive
(`archive.py`) are scored once in-process (--workers 0) and every batch handed to the model is
kept. Each variant then runs the same packed batches (the scorer's own batch plan); variants
alternate within each round so a busy neighbour slows them alike, and the CPU time of this
process (one torch thread) is the figure. Scores: the calibrated scan score and grade of every
scan through `ModelScorer.score`, and the raw per-slice quality, against `before`.

Variants: `before` is the network as v0.5.0 shipped it (PatchPhysics' Laplacian by grouped
conv2d), the reference of every score change; `fp32` the network as it now runs on the CPU
(the same stencil by shifted views); `int8` and `bf16` change only the transformer blocks
(`with_precision`). bf16 shipped as the CPU default where the CPU has native bf16
(`mediqa_cli/model/precision.py`, `mediqa score --precision`); the variant here is that
wrapper. int8 did not ship (benchmarks/RESULTS.md, "Speed: the model's arithmetic on the CPU")
and lives only here. Every variant starts from the scorer loaded in fp32.

Usage: python benchmarks/cpu_variants.py [--scans 50] [--rounds 3] [--variants fp32,int8,bf16]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive import build_archive, parts  # noqa: E402

from mediqa_cli.model.precision import map_blocks, with_bf16_blocks  # noqa: E402


def with_precision(model: Any, precision: str) -> Any:
    """The network for a variant. `bf16` is the shipped wrapper
    (`mediqa_cli.model.precision.with_bf16_blocks`: the transformer blocks under CPU bf16
    autocast); `int8` is a copy whose transformer blocks' nn.Linear layers are quantised
    dynamically (weights once, activations per call). Either way embeddings, patch physics,
    norms, the residual stream and the heads stay fp32. `fp32` is the model itself."""
    if precision == "fp32":
        return model
    if precision == "bf16":
        return with_bf16_blocks(model)
    from torch.ao.quantization import quantize_dynamic

    return map_blocks(model, lambda block: quantize_dynamic(block, {torch.nn.Linear},
                                                            dtype=torch.qint8))


def conv_laplacian(model: Any) -> Any:
    """A copy of the model that takes PatchPhysics' Laplacian by grouped conv2d, as v0.5.0
    first shipped on every device: the 'before' of the shifted-view stencil on the CPU."""
    import torch.nn.functional as F

    from mediqa_cli.model.layers import PatchPhysics

    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, PatchPhysics):
            module._lap = types.MethodType(  # type: ignore[method-assign]
                lambda self, x: F.conv2d(x, self.laplacian.to(x.dtype), groups=self.channels),
                module)
    return model


def capture(paths: list[str], out: Path) -> list[list[Any]]:
    """The batches `mediqa score` hands the model for these paths (deep copies, unscored)."""
    from mediqa_cli import scoring
    from mediqa_cli.runner import ScoreRequest, run_score

    kept: list[list[Any]] = []
    original = scoring.ModelScorer.score

    def keep(self: Any, batch: list[Any]) -> None:
        kept.append(copy.deepcopy(batch))
        original(self, batch)

    scoring.ModelScorer.score = keep  # type: ignore[method-assign]
    try:
        run_score(ScoreRequest(paths=paths, out=str(out), workers=0, quiet=True))
    finally:
        scoring.ModelScorer.score = original  # type: ignore[method-assign]
    return kept


def packed_batches(scorer: Any, batches: list[list[Any]]) -> tuple[list[Any], int]:
    """The packed tensors the scorer would run for these batches, and their slice count."""
    from mediqa_cli.model.packing import pack, plan_batches

    packed, n_slices = [], 0
    for batch in batches:
        flat = [(t, prepared.model_inputs[1]) for prepared in batch
                for t in prepared.model_inputs[0]]
        for group in plan_batches([t.n_tokens for t, _ in flat], scorer.max_tokens,
                                  scorer.config):
            packed.append(pack([flat[i][0] for i in group], [flat[i][1] for i in group],
                               scorer.config))
            n_slices += len(group)
    return packed, n_slices


def forward_cpu(scorer: Any, packed: list[Any]) -> tuple[float, list[float]]:
    """CPU seconds of the network over these packed batches, and the raw slice qualities."""
    started = time.process_time()
    quality: list[float] = []
    for batch in packed:
        quality.extend(out.quality for out in scorer._forward(scorer.model, batch))
    return time.process_time() - started, quality


def scan_scores(scorer: Any, batches: list[list[Any]]) -> list[tuple[float, str]]:
    """(score, grade) of every scan, through the scorer's own aggregation and calibration."""
    rows: list[tuple[float, str]] = []
    for batch in batches:
        fresh = copy.deepcopy(batch)
        scorer.score(fresh)
        rows.extend((float(p.result.score), str(p.result.grade)) for p in fresh
                    if p.result.score is not None)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=50, help="scans in the generated archive")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--variants", default="fp32,int8,bf16",
                        help="comma-separated: fp32, int8, bf16 (`before` always runs)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    from mediqa_cli.demo import build_demo_tree
    from mediqa_cli.model.weights import find_installed_weights
    from mediqa_cli.scoring import ModelScorer, load_scorer

    weights = find_installed_weights()
    if weights is None:
        raise SystemExit("no weights installed: the benchmark measures the shipped model")
    variants = ["before"] + [v for v in args.variants.split(",") if v and v != "before"]
    work = Path(tempfile.mkdtemp(prefix="mediqa-cpu-variants-"))
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; torch "
          f"{torch.__version__}, {torch.backends.cpu.get_cpu_capability()}; weights {weights}")
    build_demo_tree(work / "demo")
    build_archive(work / "archive", args.scans)
    trees = {"demo": [str(work / "demo")], f"archive {args.scans}": parts(work / "archive",
                                                                          args.scans)}
    captured = {name: capture(paths, work / f"{name.replace(' ', '_')}.csv")
                for name, paths in trees.items()}

    base: ModelScorer = load_scorer(weights, "cpu", precision="fp32")  # each variant from fp32
    scorers = {v: dataclasses.replace(base, model=conv_laplacian(base.model) if v == "before"
                                      else with_precision(base.model, v)) for v in variants}
    packed = {name: packed_batches(base, batches) for name, batches in captured.items()}
    for scorer in scorers.values():  # warm-up: first calls allocate, quantised kernels pack
        forward_cpu(scorer, packed["demo"][0][:1])

    cpu: dict[tuple[str, str], list[float]] = {}
    raw: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        order = variants[round_ % len(variants):] + variants[:round_ % len(variants)]
        for name, (batches, _) in packed.items():
            for v in order:
                seconds, quality = forward_cpu(scorers[v], batches)
                cpu.setdefault((name, v), []).append(seconds)
                raw[(name, v)] = quality

    print(f"\n== model CPU ms a slice (one thread, median of {args.rounds} rounds) and score "
          "change against before ==")
    print(f"{'tree':<12} {'slices':>6} {'tokens/slice':>12} {'variant':<7} {'ms/slice':>8} "
          f"{'/before':>7} {'raw slice |d| max':>17} {'mean':>7} {'scan |d| max':>12} "
          f"{'mean':>7} {'grades changed':>14}")
    for name, (batches, n_slices) in packed.items():
        tokens = sum(int(b.patches.shape[0]) for b in batches) / max(n_slices, 1)
        reference = np.asarray(raw[(name, "before")])
        ref_scans = scan_scores(scorers["before"], captured[name])
        ref_ms = statistics.median(cpu[(name, "before")]) * 1000 / n_slices
        for v in variants:
            ms = statistics.median(cpu[(name, v)]) * 1000 / n_slices
            d_raw = np.abs(np.asarray(raw[(name, v)]) - reference)
            scans = scan_scores(scorers[v], captured[name]) if v != "before" else ref_scans
            d_scan = np.abs(np.asarray([s for s, _ in scans]) - [s for s, _ in ref_scans])
            grades = sum(g != rg for (_, g), (_, rg) in zip(scans, ref_scans))
            print(f"{name:<12} {n_slices:>6} {tokens:>12.0f} {v:<7} {ms:>8.1f} "
                  f"{ms / ref_ms:>6.2f}x {d_raw.max():>17.3f} {d_raw.mean():>7.3f} "
                  f"{d_scan.max():>12.3f} {d_scan.mean():>7.3f} {grades:>8} of {len(scans)}")
    print("\nCPU seconds per round: " + "; ".join(
        f"{n} {v}: " + ", ".join(f"{s:.2f}" for s in secs) for (n, v), secs in cpu.items()))


if __name__ == "__main__":
    main()
