"""Which whole-slice measures track a stick family, and which of them does the network read?

For one family of the measuring stick (`mediqa_train.eval_ladders`, other projects' code) on the
middle slices of one fold's patients (fold 1 by default: training patients, so a diagnosis never
reads the fold that judges candidates), print

1. every physics token (`mediqa_cli.physics.PHYSICS_FEATURES`) alone: its mean within-ladder
   SRCC with the rung (+1: it rises step by step as the fault grows, -1: it falls), and
2. with --weights, the network's mean within-ladder SRCC with all tokens, and with each group of
   tokens set missing (NaN, the "missing" embedding the network was trained with) at scoring.

3. with --ranker (and --weights), a linear pairwise ranker on the tokens alone, fitted on our
   own simulators' ladders of that modality on the patients of the other training folds (never
   fold 0), read on the same stick ladders: whether the token evidence our simulators teach
   transfers; and for each --share, the network's logit plus that ranker scaled to the share of
   the network logit's spread (`mediqa_train.physics_head.reader_beside`, the shipped reader's
   recipe), which says where a reader beside the network helps and where it hurts; first, the
   network's own reading of the simulators' ladders the ranker is fitted on (training patients:
   a simulator it ranks poorly there is one it never learnt).

A family that a token tracks but whose ablation leaves the network's reading unchanged is one
the network has not learnt to read from that token; a group whose ablation breaks a family is
where the network reads it; a ranker that beats the network there says the evidence was in the
tokens and in our simulators, and the network did not take it.

Usage:
    python benchmarks/physics_reading.py --modality MR --family bias --weights weights \\
        --mirror MIRRORS
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from mediqa_train import evaluate as ev
from mediqa_train.eval_ladders import FAMILIES, Family, ladder
from mediqa_train.ladders import ladder_srcc
from mediqa_train.manifest import Entry, read_manifest
from mediqa_train.physics_head import collect_ladders, fit_ranker, reader_beside

import mediqa_cli.physics as physics
from mediqa_cli.calibration import raw_logit
from mediqa_cli.physics_head import TokenReader

TOKEN_GROUPS: dict[str, tuple[str, ...]] = {
    "none": (),
    "global (bias, ghosting, background)": ("bias", "ghosting", "background_level"),
    "levels (clipping, display, mean)": ("clip_low", "clip_high", "display_mean", "headroom",
                                         "mean_level"),
    "local (noise, sharpness, spectrum, MSCN)": (
        "noise", "noise_background", "snr", "cnr", "sharpness", "spectral_slope", "blockiness",
        "mscn_variance", "mscn_kurtosis", "mscn_neighbour"),
    "object (EFC, FBER, foreground)": ("efc", "fber", "foreground_fraction"),
    "all": physics.PHYSICS_FEATURES,
}


@contextmanager
def tokens_missing(names: Sequence[str]) -> Iterator[None]:
    """Score with these physics tokens NaN. The scorer imports `slice_physics` from the module
    at each call (`mediqa_cli.preprocess`), so replacing the module attribute reaches it."""
    original = physics.slice_physics
    index = [physics.PHYSICS_FEATURES.index(n) for n in names]

    def without(image: np.ndarray, modality: str | None = None) -> np.ndarray:
        values = original(image, modality)
        values[index] = np.nan
        return values

    physics.slice_physics = without
    try:
        yield
    finally:
        physics.slice_physics = original


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", required=True)
    parser.add_argument("--family", nargs="+", required=True,
                        help="stick families of that modality (the ranker is fitted once)")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--manifest", type=Path, default=Path("train/manifest.csv"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/manifest"))
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument("--ranker", action="store_true",
                        help="also fit a token ranker on our simulators (other folds, not 0)")
    parser.add_argument("--simulators", nargs="*", default=None,
                        help="the ranker's simulators (default: all registered for the modality)")
    parser.add_argument("--fit-groups", type=int, default=8, help="ranker images per fold")
    parser.add_argument("--share", type=float, nargs="*", default=[0.5, 1.0],
                        help="network + reader at these shares of the logit's spread")
    parser.add_argument("--simulator-token", default=None,
                        help="also print how this token moves along each simulator's ladders")
    parser.add_argument("--clean-spread", type=float, default=0.0,
                        help="the readers' penalty on their spread over clean slices")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    manifest = read_manifest(args.manifest)
    entries = [e for e in manifest if e.fold == args.fold]
    if args.ranker and args.weights is None:
        parser.error("--ranker needs --weights (the reader is scaled to the network's logits)")
    # The network alone: a reader saved with the weights would blur what the network reads.
    scorer = ev.WeightSet("model", args.weights, physics_head=False) if args.weights else None
    ranker: TokenReader | None = None
    readers: dict[float, TokenReader] = {}
    if args.ranker:
        fit_entries = [e for e in manifest if e.fold not in (0, args.fold)]
        fit = collect_ladders(scorer, args.modality, fit_entries, args.fit_groups,
                              args.seed, args.cache, args.mirror, echo=lambda _: None,
                              simulators=args.simulators)
        ranker = fit_ranker([ladder.tokens for ladder in fit])
        readers = {share: reader_beside(fit, share, clean_spread=args.clean_spread)
                   for share in args.share}
        print(f"network on our simulators' ladders (folds {sorted({e.fold for e in fit_entries})}"
              f", {args.fit_groups} images each): mean within-ladder SRCC")
        for simulator in dict.fromkeys(ladder.simulator for ladder in fit):
            values = [ladder_srcc(list(ladder.logits)) for ladder in fit
                      if ladder.simulator == simulator]
            line = f"  {simulator:<20} {np.nanmean(values):+.3f}"
            if args.simulator_token:  # does our ladder move the token the stick's family moves?
                k = physics.PHYSICS_FEATURES.index(args.simulator_token)
                rises = [-ladder_srcc(list(ladder.tokens[:, k])) for ladder in fit
                         if ladder.simulator == simulator]
                line += f"   {args.simulator_token} rises with the step {np.nanmean(rises):+.2f}"
            print(line)
    images = ev.pick_images(entries, args.groups, [args.modality])
    results: list[ev.LadderResult] = []
    for name in args.family:
        family = next(f for f in FAMILIES[args.modality] if f.name == name)
        results += read_family(family, images, args, scorer, ranker, readers)
    if results:  # what the stick's AUC reads: clean of one image against another's level >= 3
        table = ev.Table(results, list(results[0].values))
        print(f"cross-image AUC over these families (clean vs another image's level >= "
              f"{ev.AUC_FROM_LEVEL}):")
        for method in table.methods:
            print(f"  {method:<42} {table.auc(args.modality, method):.3f}")


def read_family(family: Family, images: Sequence[Entry], args: argparse.Namespace,
                scorer: ev.WeightSet | None, ranker: TokenReader | None,
                readers: dict[float, TokenReader]) -> list[ev.LadderResult]:
    """Print the three readings of one stick family on these images; return the network's
    logits and each network + reader sum per ladder (for the cross-image AUC)."""
    token_srcc: dict[str, list[float]] = {n: [] for n in physics.PHYSICS_FEATURES}
    model_srcc: dict[str, list[float]] = {g: [] for g in TOKEN_GROUPS}
    beside_srcc: dict[float, list[float]] = {share: [] for share in readers}
    ranker_srcc: list[float] = []
    results: list[ev.LadderResult] = []
    for entry in images:
        image = ev.load_image(entry, args.cache, args.mirror)
        steps = ladder(image.pixels, image.spacing, family, seed=args.seed)
        values = np.array([physics.slice_physics(s, args.modality) for s in steps])
        for i, name in enumerate(physics.PHYSICS_FEATURES):
            # ladder_srcc ranks against the clean-first order: a value falling with the fault
            # scores +1, so the sign is flipped to read "rises with the fault".
            token_srcc[name].append(-ladder_srcc(list(values[:, i])))
        if ranker is not None:
            ranker_srcc.append(ladder_srcc(list(ranker.term(values))))
        if scorer is None:
            continue
        for group, names in TOKEN_GROUPS.items():
            with tokens_missing(names):
                rows = scorer.score(steps, image, f"{entry.group}/{group}")
            model_srcc[group].append(ladder_srcc([ev._score_of(r) for r in rows]))
            if not names:  # all tokens present: the network's logit plus each reader
                logits = raw_logit(np.array([ev._score_of(r) for r in rows]))
                result = ev.LadderResult(args.modality, family.name, entry.group,
                                         {"network": list(logits)})
                for share, reader in readers.items():
                    summed = logits + reader.term(values)
                    beside_srcc[share].append(ladder_srcc(list(summed)))
                    result.values[f"network + reader at share {share:g}"] = list(summed)
                results.append(result)

    print(f"{args.modality} {family.name}, fold {args.fold}, {len(images)} ladders")
    print("token alone: mean within-ladder SRCC with the rung (+1 rises with the fault)")
    for name, values in sorted(token_srcc.items(), key=lambda kv: -abs(np.nanmean(kv[1]))
                               if np.isfinite(np.nanmean(kv[1])) else 0.0):
        print(f"  {name:<20} {np.nanmean(values):+.2f}")
    if ranker is not None:
        print(f"token ranker fitted on our simulators: {np.nanmean(ranker_srcc):+.3f}")
    if scorer is not None:
        print("network: mean within-ladder SRCC with these tokens missing")
        for group, values in model_srcc.items():
            print(f"  {group:<42} {np.nanmean(values):+.3f}")
    for share, values in beside_srcc.items():
        print(f"network + token reader at share {share:g}: {np.nanmean(values):+.3f}")
    return results


if __name__ == "__main__":
    main()
