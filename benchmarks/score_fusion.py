"""Would the score rank severity ladders better if it also subtracted the severity heads?

Why: in the accuracy runs the network's own `phys_*` severity for a ladder's family often orders
the ladder better than the quality score does (v0.3.0 on the test sources: MR blur 0.97 against
0.69), but that column knows which family the ladder is, which a score never does. This asks the
question without the oracle: each image gets q - alpha * 100 * sum_f max(0, severity_f - floor_f),
a family-blind rule, for a grid of alpha (and the severity sum alone).

The severity heads do not read zero on clean images (v0.4.0: a summed 0.18-0.70 on clean test
crops), so subtracting them outright takes up to 70 points off a clean scan. The floor is what
a clean image reads: per family, the `--floor-quantile` of its severity over clean crops of the
TRAIN sources (no val or test image sets it); the other alpha columns subtract the raw sum.

Printed per column: mean within-ladder SRCC per modality, family and over all ladders; SRCC
against the physics target on random simulator chains (as `accuracy.py`'s table, so a fusion
that ranks ladders by leaving the target behind shows); and what the penalty takes off the
clean images (ladder clean crops, and whole clean slices as `mediqa score` sees them). Choose
alpha on `--split val`, then read that column on `--split test`; nothing here changes what
`mediqa score` reports.

    python benchmarks/score_fusion.py --weights weights --split val
    python benchmarks/score_fusion.py --weights weights --split test
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accuracy import (
    chain_images,
    ladder_view_examples,
    predict_averaged,
    view_examples,
)
from mediqa_train.batches import BatchRecipe
from mediqa_train.ladders import (
    build_ladders,
    clean_crops,
    evaluation_recipe,
    example_of,
    ladder_srcc,
)
from mediqa_train.pretrain import load_pool, predict

from mediqa_cli.evaluation import srcc
from mediqa_cli.model.weights import load_weights

RAW_ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0)  # the columns of the earlier tables
FLOOR_ALPHAS = (0.5, 1.0, 2.0)

Column = Callable[[np.ndarray, np.ndarray], np.ndarray]


def fused(quality: np.ndarray, severities: np.ndarray, alpha: float,
          floor: np.ndarray | None = None) -> np.ndarray:
    """The family-blind fusion: quality minus alpha x 100 x the summed severities above the
    floor (none: the raw sum)."""
    above = severities if floor is None else np.maximum(severities - floor, 0.0)
    return quality - alpha * 100.0 * above.sum(axis=1)


def fusion_columns(floor: np.ndarray) -> dict[str, Column]:
    """Column name -> (quality, severities) -> values: the score itself, the raw sum at each
    alpha, the severity sum alone, and each alpha above the floor."""
    cols: dict[str, Column] = {"alpha 0": lambda q, s: q}
    for a in RAW_ALPHAS:
        cols[f"alpha {a:g}"] = lambda q, s, a=a: fused(q, s, a)
    cols["severity sum alone"] = lambda q, s: -s.sum(axis=1)
    for a in FLOOR_ALPHAS:
        cols[f"alpha {a:g} floor"] = lambda q, s, a=a: fused(q, s, a, floor)
    return cols


def clean_floor(model: Any, pool: Sequence[Any], recipe: BatchRecipe, per_modality: int,
                seed: int, quantile: float) -> np.ndarray:
    """(F,) per family, the `quantile` of its severity over `per_modality` random clean crops
    of each modality of `pool` (the crops the ladders start from)."""
    rng = np.random.default_rng([seed, 41])
    images, spacings, mods, anats = [], [], [], []
    for modality, _, src, clean, spacing in clean_crops(pool, model.config, recipe, per_modality,
                                                        rng):
        images.append(clean)
        spacings.append(spacing)
        mods.append(modality)
        anats.append(src.anatomy)
    pred = predict_averaged(model, view_examples(images, spacings, mods, anats, model.config,
                                                 recipe))
    return np.quantile(np.asarray(pred["severities"]), quantile, axis=0)


def fusion_table(model: Any, pool: Sequence[Any], recipe: BatchRecipe, per_modality: int,
                 seed: int, floor: np.ndarray) -> tuple[dict[str, dict[str, float]],
                                                        dict[str, np.ndarray]]:
    """(table, clean penalties): the mean within-ladder SRCC of each `fusion_columns` column
    on `build_ladders(...)`, per modality, per family ("family X"), over all ladders ("all") and
    as the mean over modalities; and per column what it takes off each ladder's clean image."""
    columns = fusion_columns(floor)
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    penalties: dict[str, list[float]] = defaultdict(list)
    for lad in build_ladders(pool, model.config, recipe, per_modality, seed):
        pred = predict_averaged(model, ladder_view_examples(lad, model.config, recipe))
        # Rounded as accuracy.py stores scores, so alpha 0 is its MedIQA column (a saturated
        # score ties instead of ordering by its 1e-4 noise).
        quality = np.round(np.asarray(pred["quality"]), 3)
        sev = np.asarray(pred["severities"])
        for name, column in columns.items():
            v = column(quality, sev)
            penalties[name].append(float(quality[0] - v[0]))
            for group in (lad.modality, "all", f"family {lad.family}"):
                per[group][name].append(ladder_srcc(v))
    table = {g: {c: float(np.nanmean(v)) for c, v in cols.items()} for g, cols in per.items()}
    mods = [g for g in table if g != "all" and not g.startswith("family ")]
    table["modality mean"] = {c: float(np.mean([table[m][c] for m in mods])) for c in columns}
    return table, {c: np.asarray(v) for c, v in penalties.items()}


def chain_srcc(model: Any, pool: Sequence[Any], recipe: BatchRecipe, n: int, seed: int,
               floor: np.ndarray) -> dict[str, float]:
    """Per column, SRCC against the physics target on `accuracy.py`'s random chains."""
    images, spacings, targets, mods, anats = chain_images(pool, model.config, recipe, n, seed)
    pred = predict_averaged(model, view_examples(images, spacings, mods, anats, model.config,
                                                 recipe))
    quality, sev = np.asarray(pred["quality"]), np.asarray(pred["severities"])
    return {name: float(srcc(column(quality, sev), np.asarray(targets)))
            for name, column in fusion_columns(floor).items()}


def whole_slice_penalties(model: Any, pool: Sequence[Any], recipe: BatchRecipe,
                          floor: np.ndarray) -> dict[str, np.ndarray]:
    """Per column, what it takes off each clean slice of the pool scored whole."""
    examples = [example_of(p.image, p.spacing, p.modality, p.anatomy, model.config, recipe)
                for p in pool]
    pred = predict(model, examples, torch.device("cpu"))
    quality, sev = np.asarray(pred["quality"]), np.asarray(pred["severities"])
    return {name: quality - column(quality, sev)
            for name, column in fusion_columns(floor).items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--corpus", default="corpus")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--per-modality", type=int, default=8, help="as benchmarks/accuracy.py")
    ap.add_argument("--chains", type=int, default=400, help="as benchmarks/accuracy.py")
    ap.add_argument("--seed", type=int, default=0, help="as benchmarks/accuracy.py")
    ap.add_argument("--floor-quantile", type=float, default=0.9)
    ap.add_argument("--floor-crops", type=int, default=32,
                    help="clean train crops per modality that set the floor")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="JSON of the tables (default: print only)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, card = load_weights(args.weights)
    # The ladders and chains of benchmarks/accuracy.py: same recipe, seed and count.
    recipe = evaluation_recipe(card)
    floor = clean_floor(model, load_pool(args.corpus, "train"), recipe, args.floor_crops,
                        args.seed, args.floor_quantile)
    pool = load_pool(args.corpus, args.split)
    table, penalties = fusion_table(model, pool, recipe, args.per_modality, args.seed, floor)
    chains = chain_srcc(model, pool, recipe, args.chains, args.seed, floor)
    whole = whole_slice_penalties(model, pool, recipe, floor)
    columns = list(table["all"])
    mods = sorted(g for g in table if g not in ("all", "modality mean")
                  and not g.startswith("family "))
    print(f"### q - alpha x 100 x sum_f max(0, severity_f - floor_f), {args.split} sources, "
          f"{args.weights}\n")
    print("floor (train clean crops, quantile "
          f"{args.floor_quantile:g}): " + ", ".join(
              f"{f} {v:.3f}" for f, v in zip(model.config.families, floor, strict=True)) + "\n")
    print("| within-ladder SRCC | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for g in ["modality mean", "all", *mods, *sorted(g for g in table if g.startswith("family"))]:
        print(f"| {g} | " + " | ".join(f"{table[g][c]:.3f}" for c in columns) + " |")
    print(f"| SRCC vs physics target, {args.chains} random chains | "
          + " | ".join(f"{chains[c]:.3f}" for c in columns) + " |")
    for label, pen in (("ladder clean crops", penalties), ("whole clean slices", whole)):
        print(f"| points off {label}, median (90th pct) | " + " | ".join(
            "-" if c == "severity sum alone"  # no score: nothing is taken off one
            else f"{np.median(pen[c]):.1f} ({np.percentile(pen[c], 90):.1f})" for c in columns)
            + " |")
    best = max((c for c in columns if c != "severity sum alone"),
               key=lambda c: table["modality mean"][c])
    print(f"\nbest column by modality mean on {args.split}: {best} "
          f"({time.perf_counter() - started:.0f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "split": args.split, "weights": args.weights, "floor": floor.tolist(),
            "floor_quantile": args.floor_quantile, "table": table, "chain_srcc": chains,
            "clean_penalty_median": {c: float(np.median(v)) for c, v in penalties.items()},
            "whole_slice_penalty_median": {c: float(np.median(v)) for c, v in whole.items()},
            "best": best}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
