"""How far each whole-slice physics measure can move its token: the network's reading of it.

Why: a token is z_f * w_f + e_f (`PhysicsTokens`); between two clean slices that differ by one
typical spread of measure f, the token moves by |w_f| x that spread in z units. A measure whose
reach is a tenth of another's is one the network can barely tell apart, whatever it carries. On
v0.8.0's network (raw measures) the level tokens, EFC and MSCN variance reach 0.06-0.09 and the
background noise 1.0 (RESULTS.md, standardised physics tokens); this prints that table for any
weights, side by side.

    python benchmarks/token_reach.py --corpus corpus_f0_1024 \
        --weights weights --weights runs/Z/weights
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from mediqa_train.physics_moments import robust_moments, sample_physics
from mediqa_train.pretrain import load_pool

from mediqa_cli.model.ensemble import members_of
from mediqa_cli.model.weights import load_weights
from mediqa_cli.physics import PHYSICS_FEATURES


def reach(weights: Path, spread: np.ndarray) -> np.ndarray:
    """(N_PHYSICS,) |w_f| x the measure's spread in the units the network reads it in."""
    model, _ = load_weights(weights, torch.device("cpu"))
    net = members_of(model)[0]
    tokens = net.slice_physics
    if tokens is None:
        raise SystemExit(f"{weights}: this network has no physics tokens")
    norms = tokens.weight.detach().double().norm(dim=1).numpy()
    return norms * spread / tokens.scale.double().numpy()


def table(names: list[str], reaches: list[np.ndarray], spread: np.ndarray) -> str:
    head = f"{'measure':20s} {'spread':>8s} " + " ".join(f"{n[-14:]:>14s}" for n in names)
    lines = [head, "-" * len(head)]
    for f, feature in enumerate(PHYSICS_FEATURES):
        lines.append(f"{feature:20s} {spread[f]:8.3f} "
                     + " ".join(f"{r[f]:14.3f}" for r in reaches))
    lines.append(f"{'max / min':20s} {'':8s} "
                 + " ".join(f"{r.max() / max(r.min(), 1e-12):14.1f}" for r in reaches))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--weights", type=Path, action="append", required=True)
    parser.add_argument("--per-modality", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    measures, _ = sample_physics(load_pool(str(args.corpus), "train"), args.per_modality, args.seed)
    _, spread = robust_moments(measures)
    spread_arr = np.asarray(spread)
    print(f"{len(measures)} clean training slices; spread = IQR / 1.349 of the raw measure")
    print(table([str(w) for w in args.weights], [reach(w, spread_arr) for w in args.weights],
                spread_arr))


if __name__ == "__main__":
    main()
