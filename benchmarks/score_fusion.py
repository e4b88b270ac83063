"""Would the score rank severity ladders better if it also subtracted the severity heads' sum?

Why: in the accuracy runs the network's own `phys_*` severity for a ladder's family often orders
the ladder better than the quality score does (v0.3.0 on the test sources: MR blur 0.97 against
0.69), but that column knows which family the ladder is, which a score never does. This asks the
question without the oracle: each ladder image gets q - alpha * 100 * sum_f severity_f, a
family-blind rule, for a grid of alpha, scored by mean within-ladder SRCC per modality. Choose
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accuracy import ladder_view_examples, predict_averaged
from mediqa_train.batches import BatchRecipe
from mediqa_train.ladders import build_ladders, evaluation_recipe, ladder_srcc
from mediqa_train.pretrain import load_pool

from mediqa_cli.model.weights import load_weights

ALPHAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def fused(quality: np.ndarray, severities: np.ndarray, alpha: float) -> np.ndarray:
    """The family-blind fusion: quality minus alpha x 100 x the summed severities."""
    return quality - alpha * 100.0 * severities.sum(axis=1)


def fusion_table(model: Any, pool: Sequence[Any], recipe: BatchRecipe, per_modality: int,
                 seed: int) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """(table, clean sums): the mean within-ladder SRCC of each fusion column on
    `build_ladders(...)`, per modality, per family ("family X"), over all ladders ("all") and as
    the mean over modalities; and each ladder's clean image's severity sum, which alpha x 100
    takes off a clean scan's score."""
    columns = [f"alpha {a:g}" for a in ALPHAS] + ["severity sum alone"]
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    clean_sums = []
    for lad in build_ladders(pool, model.config, recipe, per_modality, seed):
        pred = predict_averaged(model, ladder_view_examples(lad, model.config, recipe))
        # Rounded as accuracy.py stores scores, so alpha 0 is its MedIQA column (a saturated
        # score ties instead of ordering by its 1e-4 noise).
        quality = np.round(np.asarray(pred["quality"]), 3)
        sev = np.asarray(pred["severities"])
        clean_sums.append(float(sev[0].sum()))
        values = [fused(quality, sev, a) for a in ALPHAS] + [-sev.sum(axis=1)]
        for name, v in zip(columns, values, strict=True):
            for group in (lad.modality, "all", f"family {lad.family}"):
                per[group][name].append(ladder_srcc(v))
    table = {g: {c: float(np.nanmean(v)) for c, v in cols.items()} for g, cols in per.items()}
    mods = [g for g in table if g != "all" and not g.startswith("family ")]
    table["modality mean"] = {c: float(np.mean([table[m][c] for m in mods])) for c in columns}
    return table, np.asarray(clean_sums)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--corpus", default="corpus")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--per-modality", type=int, default=8, help="as benchmarks/accuracy.py")
    ap.add_argument("--seed", type=int, default=0, help="as benchmarks/accuracy.py")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="JSON of the table (default: print only)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, card = load_weights(args.weights)
    pool = load_pool(args.corpus, args.split)
    # The ladders of benchmarks/accuracy.py: same recipe, seed and count, so same images.
    recipe = evaluation_recipe(card)
    table, clean_sums = fusion_table(model, pool, recipe, args.per_modality, args.seed)
    columns = list(table["all"])
    mods = sorted(g for g in table if g not in ("all", "modality mean")
                  and not g.startswith("family "))
    print(f"### Within-ladder SRCC of q - alpha x 100 x sum(severities), {args.split} sources, "
          f"{args.weights}\n")
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for g in ["modality mean", "all", *mods, *sorted(g for g in table if g.startswith("family"))]:
        print(f"| {g} | " + " | ".join(f"{table[g][c]:.3f}" for c in columns) + " |")
    best = max(columns[:-1], key=lambda c: table["modality mean"][c])
    low, mid, high = np.percentile(clean_sums, [10, 50, 90])
    print(f"\nclean images' severity sum (alpha x 100 x this comes off their score): median "
          f"{mid:.3f}, 10th-90th percentile {low:.3f}-{high:.3f} over {clean_sums.size} ladders")
    print(f"best alpha by modality mean on {args.split}: {best} "
          f"({time.perf_counter() - started:.0f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps({"split": args.split, "weights": args.weights,
                                              "table": table, "best": best,
                                              "clean_severity_sum_median": mid}, indent=1)
                                  + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
