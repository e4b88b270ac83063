"""Paired comparison of two scorers on the same test ladders (accuracy_ladders.jsonl files).

Within-ladder SRCC per ladder for each side, the mean per modality and overall, and a paired
95% bootstrap interval of the difference (ladders resampled within each group), so "B beats A"
is a claim about these ladders, not about two separate noisy means. Both files must come from
`benchmarks/accuracy.py` runs with the same corpus, seed and ladder count: the ladders are
matched one to one and refused if they differ.

Usage:
    python benchmarks/compare_ladders.py A.jsonl[:COLUMN] B.jsonl[:COLUMN] [B2.jsonl[:COLUMN] ...]
        [--n-boot 2000]

COLUMN is `model` (the run's own weights; the default) or a name from the rows' `others`
(e.g. `seed1 + model (mean)` from `accuracy.py --compare seed1=...`). Several B specs make B
the mean of their scores, ladder by ladder: what an ensemble of those networks would score
(the ensemble's score is its members' mean), without publishing and re-scoring it.
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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="baseline: accuracy_ladders.jsonl[:column]")
    ap.add_argument("b", nargs="+",
                    help="candidate: accuracy_ladders.jsonl[:column]; several: their mean")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args(argv)
    name_a, rows_a, col_a = load_side(args.a)
    sides_b = [load_side(spec) for spec in args.b]
    if any(ladder_keys(rows) != ladder_keys(rows_a) for _, rows, _ in sides_b):
        print("the files hold different ladders (corpus, seed or count differ)", file=sys.stderr)
        return 2
    name_b = " + ".join(name for name, _, _ in sides_b) + (
        f" (mean of {len(sides_b)})" if len(sides_b) > 1 else "")
    a = srcc_of(side_scores(rows_a, col_a))
    b = srcc_of(np.mean([np.asarray(side_scores(rows, col), dtype=float)
                         for _, rows, col in sides_b], axis=0))
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows_a):
        groups["all"].append(i)
        groups[row["modality"]].append(i)
    for i, row in enumerate(rows_a):
        groups[f"family {row['family']}"].append(i)
    print(f"A = {name_a}\nB = {name_b}\n")
    print("| ladders | n | A | B | B - A | paired 95% |")
    print("|---|---|---|---|---|---|")
    for name, n, mean_a, mean_b, diff, low, high in paired_table(a, b, groups, args.n_boot):
        print(f"| {name} | {n} | {mean_a:.3f} | {mean_b:.3f} | {diff:+.3f} | "
              f"[{low:+.3f}, {high:+.3f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
