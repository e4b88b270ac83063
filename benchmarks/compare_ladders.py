"""Paired comparison of two scorers on the same test ladders (accuracy_ladders.jsonl files).

Within-ladder SRCC per ladder for each side, the mean per modality and overall, and a paired
95% bootstrap interval of the difference (ladders resampled within each group), so "B beats A"
is a claim about these ladders, not about two separate noisy means. Both files must come from
`benchmarks/accuracy.py` runs with the same corpus, seed and ladder count: the ladders are
matched one to one and refused if they differ.

Usage:
    python benchmarks/compare_ladders.py A.jsonl[:COLUMN] B.jsonl[:COLUMN] [B2.jsonl[:COLUMN] ...]
        [--n-boot 2000]
    python benchmarks/compare_ladders.py A1 [A2 ...] --vs B1 [B2 ...] [--per-network]

COLUMN is `model` (the run's own weights; the default) or a name from the rows' `others`
(e.g. `seed1 + model (mean)` from `accuracy.py --compare seed1=...`). Several specs on a side
make that side the mean of their scores, ladder by ladder: what an ensemble of those networks
would score (the ensemble's score is its members' mean), without publishing and re-scoring it.
With `--per-network` a side is instead the mean of its networks' within-ladder SRCCs, each
network alone: how a RECIPE does over several seeds, as opposed to their ensemble.

Specs on one side may come from different ladder sets (e.g. the test sources of two corpus
draws, `mediqa-train corpus --seed K`): specs are grouped by ladder set, averaged within a set
and the sets' ladders pooled, so a recipe is judged on more held-out images than one draw has.
Both sides must cover the same ladder sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mediqa_train.ladders import ladder_srcc

LADDER_KEYS = ("modality", "family", "simulator", "source", "shape")


def load_side(spec: str) -> tuple[str, list[dict[str, Any]], str]:
    """(label, rows, column) from `path[:column]`."""
    path, _, column = spec.partition(":")
    column = column or "model"
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return f"{path}:{column}", rows, column


def side_scores(rows: Sequence[dict[str, Any]], column: str) -> list[list[float]]:
    return [row["scores"] if column == "model" else row["others"][column] for row in rows]


def srcc_of(scores: Sequence[Sequence[float]]) -> np.ndarray:
    return np.array([ladder_srcc(v) for v in scores], dtype=float)


def ladder_keys(rows: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [tuple(json.dumps(r[k]) for k in LADDER_KEYS) for r in rows]


def paired_table(a: np.ndarray, b: np.ndarray, groups: dict[str, list[int]], n_boot: int,
                 seed: int = 0) -> list[tuple[str, int, float, float, float, float, float]]:
    """(group, n, mean A, mean B, B - A, low, high) per group; NaN ladders are dropped pairwise."""
    rng = np.random.default_rng(seed)
    out = []
    for name, index in groups.items():
        idx = np.array([i for i in index if np.isfinite(a[i]) and np.isfinite(b[i])])
        if idx.size == 0:
            continue
        diff = b[idx] - a[idx]
        boots = diff[rng.integers(0, idx.size, size=(n_boot, idx.size))].mean(axis=1)
        low, high = np.percentile(boots, [2.5, 97.5])
        out.append((name, int(idx.size), float(a[idx].mean()), float(b[idx].mean()),
                    float(diff.mean()), float(low), float(high)))
    return out


def side_srcc(specs: Sequence[str], per_network: bool
              ) -> tuple[str, dict[tuple[tuple[str, ...], ...], tuple[np.ndarray, list[Any]]]]:
    """(label, {ladder set: (per-ladder SRCC, rows)}) of one side (see module docstring)."""
    sides = [load_side(spec) for spec in specs]
    buckets: dict[tuple[tuple[str, ...], ...], list[tuple[list[dict[str, Any]], str]]] = {}
    for _, rows, column in sides:
        buckets.setdefault(tuple(ladder_keys(rows)), []).append((rows, column))
    out = {}
    for key, members in buckets.items():
        scores = [np.asarray(side_scores(rows, column), dtype=float) for rows, column in members]
        if per_network:
            srcc = np.nanmean([srcc_of(v) for v in scores], axis=0) if len(scores) > 1 else (
                srcc_of(scores[0]))
        else:
            srcc = srcc_of(np.mean(scores, axis=0))
        out[key] = (srcc, members[0][0])
    how = "mean SRCC of" if per_network else "mean of"
    label = " + ".join(name for name, _, _ in sides) + (
        f" ({how} {len(sides)})" if len(sides) > 1 and len(buckets) == 1 else
        f" ({len(sides)} networks over {len(buckets)} ladder sets)" if len(buckets) > 1 else "")
    return label, out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+",
                    help="A then B (several B: their mean), or with --vs: all of side A")
    ap.add_argument("--vs", nargs="+", default=None, help="side B (side A is every positional)")
    ap.add_argument("--per-network", action="store_true",
                    help="a side is the mean of its networks' SRCCs, not the SRCC of their mean")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args(argv)
    specs_a, specs_b = (args.specs, args.vs) if args.vs else (args.specs[:1], args.specs[1:])
    if not specs_b:
        ap.error("give side B: a second spec, or --vs")
    name_a, sets_a = side_srcc(specs_a, args.per_network)
    name_b, sets_b = side_srcc(specs_b, args.per_network)
    if set(sets_a) != set(sets_b):
        print("the sides hold different ladders (corpus, seed or count differ)", file=sys.stderr)
        return 2
    order = list(sets_a)
    a = np.concatenate([sets_a[k][0] for k in order])
    b = np.concatenate([sets_b[k][0] for k in order])
    rows_a = [row for k in order for row in sets_a[k][1]]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows_a):
        groups["all"].append(i)
        groups[row["modality"]].append(i)
    for i, row in enumerate(rows_a):
        groups[f"family {row['family']}"].append(i)
    print(f"A = {name_a}\nB = {name_b}\n")
    print("| ladders | n | A | B | B - A | paired 95% |")
    print("|---|---|---|---|---|---|")
    table = paired_table(a, b, groups, args.n_boot)
    for name, n, mean_a, mean_b, diff, low, high in table:
        print(f"| {name} | {n} | {mean_a:.3f} | {mean_b:.3f} | {diff:+.3f} | "
              f"[{low:+.3f}, {high:+.3f}] |")
    modalities = {row["modality"] for row in rows_a}
    modality_means = [(mean_a, mean_b) for name, _, mean_a, mean_b, *_ in table
                      if name in modalities]
    if modality_means:
        ma, mb = np.mean(modality_means, axis=0)
        print(f"\nmean over modalities: A {ma:.3f}, B {mb:.3f}, B - A {mb - ma:+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
