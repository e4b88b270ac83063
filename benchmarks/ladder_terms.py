"""Along the stick's ladders, how much of the score moves by the network and how much by the reader.

Why: a modality with a token reader (`mediqa_cli.physics_head`) is scored as the network's
logit plus the reader's term, and a family's within-ladder SRCC says neither which of the two
ranks the steps nor whether they are ranked by the fault's growth or by one jump from the clean
image to the first step (something every step shares: a fingerprint of the degrading code
rather than the fault). On the stick's ladders of the given folds (never fold 0 when choosing;
`mediqa-train evaluate`'s images and draws), this prints per family the mean within-ladder
SRCC of the score, the network and the term, over all six images and over steps 1-5 only,
the median move of the network and the term from the clean image to step 1 and from step 1 to
step 5 (logit units), and the tokens whose share of the term moves most from clean to step 1.
Below it, how much clean slices differ in each part (SD over the ladders' clean images; a
fault is seen across patients only where it moves the score by more than that) and the tokens
the network's clean logit follows most.

The parts are checked against the product: network + term is the logit the shipped scorer gives
the first ladder's images (the largest difference is printed).

Usage: python benchmarks/ladder_terms.py --fold 1 --fold 2 --mirror MIRRORS [--modality MR] \\
    [--weights W]
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mediqa_train import evaluate as ev
from mediqa_train.eval_ladders import FAMILIES
from mediqa_train.ladders import ladder_srcc
from mediqa_train.manifest import read_manifest
from scipy.stats import spearmanr

from mediqa_cli.calibration import raw_logit
from mediqa_cli.physics import PHYSICS_FEATURES, slice_physics
from mediqa_cli.physics_head import PhysicsHead, TokenReader


@dataclass
class ScoredLadder:
    """One ladder's network logits (steps,) and physics tokens (steps, features)."""

    family: str
    network: np.ndarray
    tokens: np.ndarray


def shares(reader: TokenReader, tokens: np.ndarray) -> np.ndarray:
    """Each token's part of the term, (steps, features): they sum to the term plus its offset."""
    return -reader.standardise(tokens) * reader.weights


def _srcc(values: np.ndarray) -> float:
    return ladder_srcc(values) if len(values) > 2 else float("nan")


def family_lines(ladders: list[ScoredLadder], reader: TokenReader, top: int = 4) -> list[str]:
    """The table: one line per family, then its `top` tokens by their move from clean to step 1."""
    lines = [f"{'family':11s} {'n':>3s}  {'SRCC score / network / term':>28s}  "
             f"{'steps 1-5 only':>20s}  {'clean→1 net, term':>18s}  {'1→5 net, term':>15s}"]
    for family in dict.fromkeys(x.family for x in ladders):
        rows = [x for x in ladders if x.family == family]
        parts = {"score": [reader.logit(x.network, x.tokens) for x in rows],
                 "network": [x.network for x in rows],
                 "term": [reader.term(x.tokens) for x in rows]}
        every = [np.nanmean([_srcc(v) for v in parts[k]]) for k in parts]
        later = [np.nanmean([_srcc(v[1:]) for v in parts[k]]) for k in parts]
        first = [np.nanmedian([v[1] - v[0] for v in parts[k]]) for k in ("network", "term")]
        rest = [np.nanmedian([v[-1] - v[1] for v in parts[k]]) for k in ("network", "term")]
        lines.append(f"{family:11s} {len(rows):3d}  {' / '.join(f'{s:+.2f}' for s in every):>28s}  "
                     f"{' / '.join(f'{s:+.2f}' for s in later):>20s}  "
                     f"{first[0]:+8.2f} {first[1]:+8.2f}  {rest[0]:+7.2f} {rest[1]:+7.2f}")
        token_parts = np.stack([shares(reader, x.tokens) for x in rows])  # (ladders, steps, F)
        jump = np.nanmedian(token_parts[:, 1] - token_parts[:, 0], axis=0)
        growth = np.nanmedian(token_parts[:, -1] - token_parts[:, 1], axis=0)
        for k in np.argsort(-np.abs(jump))[:top]:
            lines.append(f"{'':16s}{PHYSICS_FEATURES[k]:20s} clean→1 {jump[k]:+.3f}, "
                         f"1→5 {growth[k]:+.3f}")
    return lines


def clean_spread(ladders: list[ScoredLadder], reader: TokenReader, top: int = 3) -> str:
    """SD of the network, the term and the score over the distinct clean images, and the
    tokens the network's clean logit follows most (Spearman over those images)."""
    seen: dict[bytes, ScoredLadder] = {}
    for x in ladders:
        seen.setdefault(x.tokens[0].tobytes(), x)
    network = np.array([x.network[0] for x in seen.values()])
    term = np.array([reader.term(x.tokens[:1])[0] for x in seen.values()])
    tokens = np.stack([x.tokens[0] for x in seen.values()])
    follows = []
    for k, name in enumerate(PHYSICS_FEATURES):
        keep = np.isfinite(tokens[:, k]) & np.isfinite(network)
        if keep.sum() > 2 and np.ptp(tokens[keep, k]) > 0:
            follows.append((spearmanr(tokens[keep, k], network[keep]).statistic, name))
    follows.sort(key=lambda t: -abs(t[0]))
    return (f"clean images: {len(seen)}; SD of the network {np.nanstd(network):.2f}, "
            f"of the term {np.nanstd(term):.2f}, of the score {np.nanstd(network + term):.2f}; "
            "the network's clean logit follows "
            + ", ".join(f"{name} {rho:+.2f}" for rho, name in follows[:top]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold", type=int, action="append", required=True)
    parser.add_argument("--modality", default="MR")
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="the ladder draws' seed (evaluate's)")
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--manifest", type=Path, default=Path("train/manifest.csv"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/manifest"))
    parser.add_argument("--mirror", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    head = PhysicsHead.load(args.weights)
    reader = head.readers.get(args.modality) if head is not None else None
    if reader is None or reader.network_weight != 1.0:
        parser.error(f"{args.weights}: no token reader for {args.modality} that adds to the "
                     "network's logit (a site reader also weighs it)")
    network = ev.WeightSet("network", args.weights, physics_head=False)
    shipped = ev.WeightSet("score", args.weights)

    ladders: list[ScoredLadder] = []
    checked = None
    manifest = read_manifest(args.manifest)
    for fold in args.fold:
        entries = [e for e in manifest if e.fold == fold]
        for entry in ev.pick_images(entries, args.groups, [args.modality]):
            try:
                image = ev.load_image(entry, args.cache, args.mirror)
            except ValueError:  # evaluate skips these too
                continue
            for family in FAMILIES[args.modality]:
                key = ev.ladder_key(args.seed, image, family)
                steps = ev.ladder_steps(image, family, key)
                tag = f"{image.source_id}/{family.name}"
                logits = raw_logit(np.array([ev._score_of(r)
                                             for r in network.score(steps, image, tag)]))
                tokens = np.stack([slice_physics(s, args.modality) for s in steps])
                ladders.append(ScoredLadder(family.name, logits, tokens))
                if checked is None:
                    scored = raw_logit(np.array([ev._score_of(r)
                                                 for r in shipped.score(steps, image, tag)]))
                    checked = float(np.nanmax(np.abs(reader.logit(logits, tokens) - scored)))
    if not ladders:
        raise SystemExit(f"no {args.modality} image of folds {args.fold} could be read")
    print(f"{args.modality} ladders of folds {args.fold}: {len(ladders)}; network + term vs the "
          f"scorer's logit on the first ladder: largest difference {checked:.1e}")
    print("\n".join(family_lines(ladders, reader)))
    print(clean_spread(ladders, reader))


if __name__ == "__main__":
    main()
