"""How much of each XR corpus slice the over/under-exposure simulator clips, per exposure error.

Why: until 2026-11-30 `xr_exposure` took stored pixel values as proportional to dose and
saturated at 1.2x the 99th percentile. The packaged radiographs are 'for presentation' CR images
whose bright half (bone, collimation, after the MONOCHROME1 inversion) sits near that
percentile, so a small overexposure whitened most of the image and three of the four XR
exposure test ladders were one flat image from severity 0.4 on. The simulator now works in the
dose domain (see XRExposure); this prints the saturated fraction and the number of distinct
values left, so the ladders can be checked: `python benchmarks/xr_exposure_clipping.py`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch
from mediqa_train.corpus import open_corpus
from mediqa_train.degrade.xray import XRExposure, XRExposureParams

EXPOSURE_ERRORS = (0.6, 1.2, 3.0, -1.2, -3.0)  # stops; severity = |ev| / 3


def clipped_fraction(clean: torch.Tensor, out: torch.Tensor, params: XRExposureParams) -> float:
    """Fraction of pixels at the detector's saturation, which renders as one grey level."""
    sim = XRExposure()
    level = sim.saturated_grey(clean, params)
    tolerance = 1e-4 * sim.grey_scale(clean)[1]
    return float(((out - level).abs() <= tolerance).float().mean())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="corpus")
    args = ap.parse_args(argv)
    sim = XRExposure()
    print("| split | source | p1 / p50 / p99 | "
          + " | ".join(f"{ev:+.1f} EV clipped (distinct)" for ev in EXPOSURE_ERRORS) + " |")
    print("|---|---|---|" + "---|" * len(EXPOSURE_ERRORS))
    for split in ("train", "val", "test"):
        for item in open_corpus(args.corpus, split):
            if item.modality != "XR":
                continue
            image = torch.as_tensor(np.asarray(item.image, dtype=np.float32))
            p1, p50, p99 = np.percentile(image.numpy(), [1, 50, 99])
            cells = []
            for ev in EXPOSURE_ERRORS:
                params = XRExposureParams(ev, sim.SATURATION, sim.BITS)
                out = sim.apply(image, item.spacing, params, torch.Generator().manual_seed(0))
                cells.append(f"{clipped_fraction(image, out, params):.2f} "
                             f"({out.unique().numel()})")
            print(f"| {split} | {item.source} | {p1:.0f} / {p50:.0f} / {p99:.0f} | "
                  + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
