"""Does the training target price what a stick family does, and does the model rank either?

For one family of the measuring stick (`mediqa_train.eval_ladders`, other projects' code) and
one of our simulators, on the middle slices of one fold's patients (fold 1 by default: training
patients, so a diagnosis never reads the fold that judges candidates), print along both ladders
the pre-training target (SSIM to the clean slice, `mediqa_train.quality.reference_quality`) and,
with --weights, the model's raw scores and their within-ladder SRCC; before each image's
ladders, its clean mean value and level tokens (an under-exposed original shows there). A stick
family whose harm the target cannot see at our simulator's severities is one the network was
never taught.

Usage:
    python benchmarks/target_vs_stick.py --modality MR --family bias --simulator mr_bias \\
        --weights weights --mirror MIRRORS
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from mediqa_train import evaluate as ev
from mediqa_train.eval_ladders import FAMILIES, ladder
from mediqa_train.ladders import as_chw, ladder_srcc, simulator_ladder
from mediqa_train.manifest import read_manifest
from mediqa_train.quality import reference_quality

from mediqa_cli.physics import PHYSICS_FEATURES, slice_physics

LEVEL = {name: PHYSICS_FEATURES.index(name) for name in ("display_mean", "headroom")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", required=True)
    parser.add_argument("--family", required=True, help="a stick family of that modality")
    parser.add_argument("--simulator", required=True, help="one of our simulators (registry)")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--manifest", type=Path, default=Path("train/manifest.csv"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/manifest"))
    parser.add_argument("--mirror", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    family = next(f for f in FAMILIES[args.modality] if f.name == args.family)
    entries = [e for e in read_manifest(args.manifest) if e.fold == args.fold]
    scorer = ev.WeightSet("model", args.weights) if args.weights else None
    srcc: dict[str, list[float]] = {"stick": [], "simulator": []}
    for entry in ev.pick_images(entries, args.groups, [args.modality]):
        image = ev.load_image(entry, args.cache, args.mirror)
        ladders = {"stick": ladder(image.pixels, image.spacing, family, seed=args.seed),
                   "simulator": simulator_ladder(image.pixels, image.spacing, args.simulator,
                                                 args.seed)}
        clean = as_chw(image.pixels)
        levels = slice_physics(np.asarray(image.pixels), args.modality)
        print(f"{entry.group:<22} clean     mean {float(np.mean(image.pixels)):6.1f}  "
              f"display_mean {levels[LEVEL['display_mean']]:.2f}  "
              f"headroom {levels[LEVEL['headroom']]:.2f}", flush=True)
        for name, steps in ladders.items():
            target = [reference_quality(clean, as_chw(s), args.modality)
                      for s in steps]
            line = f"{entry.group:<22} {name:<9} target {' '.join(f'{t:5.1f}' for t in target)}"
            if scorer is not None:
                rows = scorer.score(steps, image, f"{entry.group}/{name}")
                scores = [ev._score_of(r) for r in rows]
                rho = ladder_srcc(scores)
                srcc[name].append(rho)
                line += f"   model {' '.join(f'{s:5.1f}' for s in scores)}  SRCC {rho:+.2f}"
            print(line, flush=True)
    if scorer is not None:
        for name, values in srcc.items():
            print(f"mean within-ladder SRCC, {name}: {np.nanmean(values):+.3f} "
                  f"({len(values)} ladders)")


if __name__ == "__main__":
    main()
