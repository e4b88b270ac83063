"""End-to-end throughput of `mediqa score`, measured side by side in one run.

Prints ratios, because the machines are shared and absolute times drift:
1. scoring vs the I/O floor (discover + decode every slice once) on the demo archive and on a
   3D DICOM series written from a real volume (goal on CPU: scoring < 1.5x decoding); and the
   demo archive with `--views 2` and `4` (mirror views) against one view;
2. our model vs the paper's design (MANIQA-style ViT-B/8 at 224x224 on 7 fixed slices, random
   init: a cost comparison only) per volume, with per-slice FLOPs;
3. backends: eager vs torch.compile vs TorchScript vs torch.export on the same packed batch.

Usage: python benchmarks/end_to_end.py [--quick] [--threads N]
If no weights are installed, a randomly initialised default-size network stands in: speed does
not depend on the weight values, and the script says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mediqa_cli.demo import build_demo_tree, write_dicom_series
from mediqa_cli.io import Scan, discover
from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.weights import find_installed_weights, save_weights
from mediqa_cli.runner import ScoreRequest, run_score


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of fn over repeats (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_all(root: Path) -> tuple[int, int]:
    """The I/O floor: find every scan and decode each of its slices once."""
    scans = slices = 0
    for item in discover([str(root)]):
        if isinstance(item, Scan):
            scans += 1
            for index in range(item.n_slices):
                item.read_slice(index)
                slices += 1
    return scans, slices


def score_tree(root: Path, out: Path, workers: int, backend: str = "eager",
               views: int = 1) -> None:
    code = run_score(ScoreRequest(paths=[str(root)], out=str(out), workers=workers, quiet=True,
                                  backend=backend, views=views))
    if code not in (0, 1):
        raise SystemExit(f"mediqa score failed with exit code {code}")


def real_volume_series(target: Path, side: int | None = None) -> Path:
    """A 3D DICOM series (one file per slice) from nilearn's MNI T1 template, or nibabel's EPI.

    side: resample each slice to side x side (bilinear) to mimic a 512-matrix CT/MR series.
    """
    try:
        from nilearn.datasets import load_mni152_template

        volume = np.asarray(load_mni152_template(resolution=1).dataobj, dtype=np.float32)
        source = "MNI152 T1 template (nilearn)"
    except Exception:  # noqa: BLE001 - nilearn missing: fall back to nibabel's EPI
        import nibabel as nib

        path = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
        volume = np.asarray(nib.load(path).dataobj, dtype=np.float32)[..., 0]
        source = "example4d EPI (nibabel)"
    stack = np.moveaxis(volume, 2, 0)
    if side is not None:
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(stack))[:, None], size=(side, side),
            mode="bilinear", align_corners=False)
        stack = resized[:, 0].numpy()
        source += f", resampled to {side}x{side}"
    stack = (stack / max(float(stack.max()), 1e-6) * 4000).astype(np.int16)
    write_dicom_series(stack, target, modality="MR", pixel_spacing=(1.0, 1.0),
                       slice_spacing=1.0, body_part="HEAD", seed=0)
    print(f"3D series: {source}, {stack.shape[0]} slices of {stack.shape[1]}x{stack.shape[2]}")
    return target


def paper_vit_b8() -> torch.nn.Module:
    """ViT-B/8 as in MANIQA's backbone: 224/8 = 784 tokens + CLS, width 768, 12 layers/heads."""

    class ViT(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Conv2d(3, 768, kernel_size=8, stride=8)
            self.cls = torch.nn.Parameter(torch.zeros(1, 1, 768))
            self.pos = torch.nn.Parameter(torch.zeros(1, 785, 768))
            layer = torch.nn.TransformerEncoderLayer(768, 12, 3072, batch_first=True,
                                                     norm_first=True, activation="gelu")
            self.blocks = torch.nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)
            self.head = torch.nn.Linear(768, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = self.embed(x).flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos
            return self.head(self.blocks(tokens)[:, 0])

    return ViT().eval()


def transformer_flops(tokens: int, width: int, depth: int, mlp: float) -> float:
    """Forward FLOPs of a pre-norm encoder (2 x multiply-adds): projections, attention, MLP."""
    per_layer = 2 * tokens * (4 * width * width + 2 * mlp * width * width) + 4 * tokens**2 * width
    return depth * per_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    repeats = 1 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="mediqa-bench-"))
    weights = find_installed_weights()
    if weights is None:
        torch.manual_seed(0)
        weights = save_weights(MedIQANet(ModelConfig()).eval(), work / "weights", version="random")
        os.environ["MEDIQA_WEIGHTS"] = str(weights)
        print("no weights installed: a randomly initialised default-size network stands in")
    print(f"torch {torch.__version__}, {args.threads} thread(s), device cpu, weights {weights}")

    demo = work / "demo"
    build_demo_tree(demo)
    series = real_volume_series(work / "series")
    series_512 = real_volume_series(work / "series512", side=512)
    empty = work / "empty"
    empty.mkdir()
    startup = timed(lambda: score_tree(empty, work / "s.csv", workers=0), repeats)
    print("\n== 1. scoring vs the I/O floor ==")
    print(f"start-up of a run (load and verify weights, no scans): {startup:.3f} s; the columns "
          "below exclude it (it is paid once per run, not per scan)")
    print(f"{'tree':<10} {'scans':>5} {'slices':>6} {'decode s':>9} {'score s':>8} "
          f"{'score/decode':>12} {'scans/s':>8} {'slices/s':>8}")
    for name, root in (("demo", demo), ("3D 197x233", series), ("3D 512x512", series_512)):
        n_scans, n_slices = decode_all(root)
        floor = timed(lambda root=root: decode_all(root), repeats)
        total = timed(lambda root=root: score_tree(root, work / "r.csv", workers=0), repeats)
        score = max(total - startup, 1e-9)
        print(f"{name:<10} {n_scans:>5} {n_slices:>6} {floor:>9.3f} {score:>8.3f} "
              f"{score / floor:>12.2f} {n_scans / score:>8.2f} {n_slices / score:>8.1f}")
    if (os.cpu_count() or 1) > 1:
        pooled = timed(lambda: score_tree(demo, work / "p.csv", workers=1), repeats)
        alone = timed(lambda: score_tree(demo, work / "q.csv", workers=0), repeats)
        print(f"demo with 1 decoding worker vs in-process: {alone / pooled:.2f}x "
              "(>1: decoding overlaps the model)")
    one_view = timed(lambda: score_tree(demo, work / "v1.csv", workers=0), repeats)
    for views in (2, 4):
        more = timed(lambda views=views: score_tree(demo, work / f"v{views}.csv", workers=0,
                                                    views=views), repeats)
        print(f"demo with --views {views} vs 1: {more / one_view:.2f}x the time "
              "(mirror views multiply the model's share, not decoding's)")

    print("\n== 2. our model vs the paper's ViT-B/8 design (per volume) ==")
    from mediqa_cli.model.packing import example_batch

    config = ModelConfig()
    ours = MedIQANet(config).eval()
    vit = paper_vit_b8()
    slices_ours, tokens = 8, 256
    batch = example_batch(config, [tokens] * slices_ours)
    images = torch.rand(7, 3, 224, 224)
    with torch.inference_mode():
        t_ours = timed(lambda: ours(*batch.args()), repeats)
        t_vit = timed(lambda: vit(images), repeats)
    seq = tokens + config.n_queries
    f_ours = transformer_flops(seq, config.width, config.depth, config.mlp_ratio)
    f_vit = transformer_flops(785, 768, 12, 4.0)
    print(f"ours: {slices_ours} salient slices x {tokens} tokens, {t_ours:.3f} s/volume, "
          f"{f_ours / 1e9:.2f} GFLOP/slice")
    print(f"paper (ViT-B/8 @224, 7 slices): {t_vit:.3f} s/volume, {f_vit / 1e9:.1f} GFLOP/slice")
    print(f"time ratio paper/ours: {t_vit / t_ours:.1f}x; FLOP ratio per slice: "
          f"{f_vit / f_ours:.1f}x")

    print("\n== 3. backends on one packed batch (8 slices x 256 tokens) ==")
    from mediqa_cli.model.export import export_model, script_model

    runners: dict[str, Callable[[], object]] = {"eager": lambda: ours(*batch.args())}
    scripted = script_model(ours)
    runners["torchscript"] = lambda: scripted(*batch.args())
    compiled = torch.compile(ours, dynamic=True)
    runners["compile"] = lambda: compiled(*batch.args())
    program = export_model(ours, tokens).module()
    runners["export"] = lambda: program(*batch.args())
    with torch.inference_mode():
        times = {name: timed(fn, repeats + 2) for name, fn in runners.items()}
    for name, value in times.items():
        print(f"{name:<12} {value * 1000:8.1f} ms   eager/this = {times['eager'] / value:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
