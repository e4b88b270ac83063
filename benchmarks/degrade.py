"""Degraded slices per second for every simulator, and how that compares to a training step.

Generation must not be the training bottleneck. The model is not written yet, so the reference
step is a STAND-IN: a 4-layer, width-192, 4-head pre-norm nn.TransformerEncoder, forward and
backward on a batch of 16 slices x 256 tokens (a 256^2 slice in 16 px patches), timed in the
same run on the same device. "gen/step" is the time to degrade 16 slices divided by one step:
below 1, one data worker keeps up. Both run with --threads CPU threads (default 1, a data-loader
worker's setting; on a shared 2-core machine more threads mostly measure contention).

    .venv/bin/python benchmarks/degrade.py            # 256^2, CPU (+ GPU column with CUDA)
    .venv/bin/python benchmarks/degrade.py --quick    # 128^2, fewer repeats
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from mediqa_train.degrade import REGISTRY
from pydicom.data import get_testdata_file


def _real_slices(size: int) -> dict[str, tuple[torch.Tensor, tuple[float, float]]]:
    """One real slice per modality, resized to size^2, in physical units."""
    def resize(array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        chw = t.permute(2, 0, 1) if t.dim() == 3 else t[None]
        out = F.interpolate(chw[None], size=(size, size), mode="area")[0]
        return out[0].contiguous() if t.dim() == 2 else out.contiguous()

    ct = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    hu = np.maximum(ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept), -1024)
    mr = pydicom.dcmread(get_testdata_file("MR2_UNCR.dcm")).pixel_array
    xr = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm")).pixel_array.astype(np.float32)
    us = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm")).pixel_array
    nm = pydicom.dcmread(get_testdata_file("JPEG2000_UNC.dcm")).pixel_array[200:456]
    from skimage import data
    mm = 0.5  # a nominal spacing: the benchmark times work, not anatomy
    return {"CT": (resize(hu), (mm, mm)), "MR": (resize(mr), (mm, mm)),
            "XR": (resize(xr.max() - xr), (mm, mm)), "US": (resize(us), (mm, mm)),
            "NM": (resize(np.maximum(nm, 0)), (mm, mm)),
            "FUNDUS": (resize(data.retina()), (mm, mm)),
            "HISTO": (resize(data.immunohistochemistry()), (mm, mm)),
            "OTHER": (resize(data.immunohistochemistry()), (mm, mm))}


def _time(fn, repeats: int, device: torch.device) -> float:
    """Median seconds per call after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def stand_in_step_seconds(device: torch.device, repeats: int, batch: int = 16,
                          tokens: int = 256) -> float:
    """Seconds of one fwd+bwd+SGD step of the stand-in transformer (see module docstring)."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(192, 4, dim_feedforward=768, batch_first=True,
                                             norm_first=True, dropout=0.0)
    model = torch.nn.TransformerEncoder(layer, 4, enable_nested_tensor=False).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, tokens, 192, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()

    return _time(step, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128^2 slices, fewer repeats")
    parser.add_argument("--size", type=int, default=None, help="slice side in pixels")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for both (1 = one data-loader worker; default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = args.size or (128 if args.quick else 256)
    repeats = 3 if args.quick else 7
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    slices = _real_slices(size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, slices {size}x{size}")

    step = {d.type: stand_in_step_seconds(d, repeats) for d in devices}
    for d, s in step.items():
        print(f"stand-in training step ({d}; 4x192 transformer, 16 slices x 256 tokens, "
              f"fwd+bwd): {1000 * s:.0f} ms")

    header = "| simulator | modality | CPU slices/s | CPU gen/step |"
    rule = "|---|---|---:|---:|"
    if "cuda" in step:
        header += " GPU slices/s | GPU gen/step |"
        rule += "---:|---:|"
    print()
    print(header)
    print(rule)
    for key in sorted(REGISTRY):
        sim = REGISTRY[key]
        modality = sim.modalities[0]
        row = f"| {key} | {modality} |"
        for d in devices:
            image, spacing = slices[modality]
            image = image.to(d)
            rng = torch.Generator(device=d).manual_seed(0)
            params = sim.sample(rng, 0.7)
            def run(sim=sim, image=image, spacing=spacing, params=params, rng=rng) -> None:
                sim.apply(image, spacing, params, rng)

            seconds = _time(run, repeats, d)
            row += f" {1 / seconds:.0f} | {16 * seconds / step[d.type]:.2f} |"
        print(row)


if __name__ == "__main__":
    main()
