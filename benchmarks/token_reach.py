"""How far each whole-slice physics measure can move its token: the network's reading of it.

Why: a physics token is value_f * w_f + e_f (`PhysicsTokens`); between two clean slices that
differ by one typical spread of measure f, the token moves by |w_f| x that spread. A measure whose
reach is a tenth of another's is one the network can barely tell apart, whatever it carries. On
v0.8.0's network the level tokens (display mean, headroom, mean level), EFC and MSCN variance
reach 0.06-0.09 and the background noise 1.0: the measures' spreads differ 60-fold and every w_f
has one learning rate and weight decay (RESULTS.md, candidate Z). Spread: IQR / 1.349 over up
to `--per-modality` clean training slices of each modality.

    python benchmarks/token_reach.py --corpus corpus_f0_1024 --weights weights [--weights W2]

Networks with raw measures only: candidate Z's column (standardised measures, read as spread /
scale) comes from this script on branch `standardised-tokens`, whose weights only load there.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from mediqa_train.batches import to_reader_layout
from mediqa_train.pretrain import load_pool

from mediqa_cli.model.ensemble import members_of
from mediqa_cli.model.weights import load_weights
from mediqa_cli.physics import PHYSICS_FEATURES, slice_physics


def sample_physics(pool: list, per_modality: int, seed: int) -> np.ndarray:
    """(n, N_PHYSICS) measures of up to `per_modality` whole clean slices of each modality,
    drawn at random. Not `domain_profile.corpus_measures` (evenly spaced, up to nearly twice the cap
    per modality): this is the sample candidate Z's standardisation
    and every figure in RESULTS.md were computed on."""
    rng = np.random.default_rng(seed)
    by_modality: dict[str, list[int]] = {}
    for i, item in enumerate(pool):
        by_modality.setdefault(item.modality, []).append(i)
    rows = []
    for modality in sorted(by_modality):
        indices = by_modality[modality]
        for i in rng.choice(indices, size=min(per_modality, len(indices)), replace=False):
            rows.append(slice_physics(np.asarray(to_reader_layout(pool[int(i)].image)), modality))
    return np.array(rows, dtype=np.float64).reshape(-1, len(PHYSICS_FEATURES))


def robust_spread(measures: np.ndarray) -> np.ndarray:
    """Per measure: IQR / 1.349 of its finite values (NaN where it is never measured)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column never measured: NaN
        q25, q75 = np.nanpercentile(measures, [25, 75], axis=0)
    return (q75 - q25) / 1.349


def reach(weights: Path, spread: np.ndarray) -> np.ndarray:
    """(N_PHYSICS,) |w_f| x the measure's spread."""
    model, _ = load_weights(weights, torch.device("cpu"))
    tokens = members_of(model)[0].slice_physics
    if tokens is None:
        raise SystemExit(f"{weights}: this network has no physics tokens")
    return tokens.weight.detach().double().norm(dim=1).numpy() * spread


def table(names: list[str], reaches: list[np.ndarray], spread: np.ndarray) -> str:
    head = f"{'measure':20s} {'spread':>8s} " + " ".join(f"{n[-14:]:>14s}" for n in names)
    lines = [head, "-" * len(head)]
    for f, feature in enumerate(PHYSICS_FEATURES):
        lines.append(f"{feature:20s} {spread[f]:8.3f} "
                     + " ".join(f"{r[f]:14.3f}" for r in reaches))
    lines.append(f"{'max / min':20s} {'':8s} "
                 + " ".join(f"{np.nanmax(r) / max(np.nanmin(r), 1e-12):14.1f}" for r in reaches))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--weights", type=Path, action="append", required=True)
    parser.add_argument("--per-modality", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    measures = sample_physics(list(load_pool(str(args.corpus), "train")), args.per_modality,
                              args.seed)
    spread = robust_spread(measures)
    print(f"{len(measures)} clean training slices; spread = IQR / 1.349 of the raw measure")
    print(table([str(w) for w in args.weights], [reach(w, spread) for w in args.weights],
                spread))


if __name__ == "__main__":
    main()
