"""Does the network read a physics token? Scale it on clean slices and watch the raw score.

Why: a stick family can fail because the measures never see the artefact, or because the network
sees it in a token and ignores it. For the middle slice of a few patients of one fold (fold 1 by
default: training patients, so a diagnosis never reads the fold that judges candidates), this
prints the chosen physics measures along one stick family (what the tokens see), then the raw
score of the clean slice with only the chosen tokens multiplied by each factor (what the network
makes of them). A score that does not move while the tokens fall is a token the network ignores.

Usage:
    python benchmarks/token_sensitivity.py --modality FUNDUS --family illumination \\
        --feature display_mean --feature headroom --weights weights --mirror MIRRORS
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
from mediqa_train import evaluate as ev
from mediqa_train.eval_ladders import FAMILIES, ladder
from mediqa_train.manifest import read_manifest

from mediqa_cli import physics


def scaled_physics(features: list[str], factor: float):  # noqa: ANN201 - a slice_physics
    """`physics.slice_physics` with the named measures multiplied by `factor`."""
    index = [physics.PHYSICS_FEATURES.index(name) for name in features]
    measure = physics.slice_physics

    def scaled(image: np.ndarray, modality: str | None = None) -> np.ndarray:
        values = measure(image, modality).copy()
        values[index] *= factor
        return values

    return scaled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", required=True)
    parser.add_argument("--family", required=True, help="a stick family of that modality")
    parser.add_argument("--feature", action="append", required=True,
                        help="a physics measure (mediqa_cli.physics.PHYSICS_FEATURES); repeat")
    parser.add_argument("--factors", default="1,0.7,0.5,0.3,0.1")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--manifest", type=Path, default=Path("train/manifest.csv"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/manifest"))
    parser.add_argument("--mirror", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    unknown = sorted(set(args.feature) - set(physics.PHYSICS_FEATURES))
    if unknown:
        parser.error(f"unknown physics measures {unknown}")
    factors = [float(v) for v in args.factors.split(",")]

    family = next(f for f in FAMILIES[args.modality] if f.name == args.family)
    entries = [e for e in read_manifest(args.manifest) if e.fold == args.fold]
    scorer = ev.WeightSet("model", args.weights)
    moves = []
    for entry in ev.pick_images(entries, args.groups, [args.modality]):
        image = ev.load_image(entry, args.cache, args.mirror)
        steps = ladder(image.pixels, image.spacing, family, seed=args.seed)
        print(entry.group)
        measured = [physics.slice_physics(s, args.modality) for s in steps]
        for name in args.feature:
            column = physics.PHYSICS_FEATURES.index(name)
            along = ' '.join(f'{values[column]:+.3f}' for values in measured)
            print(f"  {name:<20} along the stick: {along}")
        scores = []
        for factor in factors:
            with mock.patch.object(physics, "slice_physics", scaled_physics(args.feature, factor)):
                rows = scorer.score([steps[0]], image, f"{entry.group}/x{factor}")
            scores.append(ev._score_of(rows[0]))
        moves.append(max(scores) - min(scores))
        print(f"  clean slice, tokens x {' / '.join(f'{f:g}' for f in factors)}: score "
              f"{' '.join(f'{s:6.2f}' for s in scores)}")
    print(f"largest score move over the factors, median over {len(moves)} slices: "
          f"{np.median(moves):.2f} points")


if __name__ == "__main__":
    main()
