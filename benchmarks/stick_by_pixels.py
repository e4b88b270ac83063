"""Are a stick modality's failures on scanner pixels or on processed images?

The stick picks one image per patient group, original scanner pixels first (`ground_truth`),
then processed ones (skull-stripped, resampled, intensity-normalised). A family that fails on
one kind and not the other says where the network's reading breaks. Reads a stick result file
(`mediqa-train evaluate --out`) and the manifest, and prints, for every method in the file,
the mean within-ladder SRCC per family over the groups with scanner pixels and over the rest.

    python benchmarks/stick_by_pixels.py \
        benchmarks/results/stick3_v080_rivals_fold0.json --modality MR
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from mediqa_train.ladders import ladder_srcc
from mediqa_train.manifest import read_manifest


def scanner_pixels_by_group(modality: str) -> dict[str, bool]:
    """A group counts as scanner pixels when any of its files is a `ground_truth` file: the
    stick then picks that file (`mediqa_train.evaluate.pick_images`)."""
    flags: dict[str, bool] = defaultdict(bool)
    for entry in read_manifest():
        if entry.modality == modality:
            flags[entry.group] |= entry.ground_truth
    return dict(flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a stick result file (evaluate --out)")
    parser.add_argument("--modality", default="MR")
    args = parser.parse_args()

    ladders = [r for r in json.loads(args.results.read_text())["ladders"]
               if r["modality"] == args.modality]
    raw = scanner_pixels_by_group(args.modality)
    families = list(dict.fromkeys(r["family"] for r in ladders))
    methods = sorted({k for r in ladders for k in r["values"]},
                     key=lambda k: (k not in ("model", "compare"), k))
    groups = {kind: sorted({r["group"] for r in ladders if raw.get(r["group"]) == kind})
              for kind in (True, False)}
    print(f"{args.modality}: {len(groups[True])} groups with scanner pixels, "
          f"{len(groups[False])} processed; mean within-ladder SRCC (NaN ladders left out)")
    print(f"{'method':16s} {'pixels':9s} " + " ".join(f"{f:>10s}" for f in families))
    for method in methods:
        for kind, label in ((True, "scanner"), (False, "processed")):
            row = []
            for family in families:
                values = [ladder_srcc(r["values"][method]) for r in ladders
                          if r["family"] == family and raw.get(r["group"]) == kind
                          and method in r["values"]]
                finite = [v for v in values if np.isfinite(v)]
                row.append(f"{np.mean(finite):10.2f}" if finite else f"{'-':>10s}")
            print(f"{method:16s} {label:9s} " + " ".join(row))


if __name__ == "__main__":
    main()
