"""Where along a severity ladder does a scorer lose the order? Adjacent-step concordance.

A within-ladder SRCC says how well a ladder is ordered, not where it breaks. This prints, for
each scorer, the share of ladders whose score falls from one step to the next (clean > 0.2,
0.2 > 0.4, ..., 0.8 > 1.0), overall and per modality, next to the same share for the physics
target. A step the scorer fails far more often than the physics target is a step to look at:
e.g. a top step that training never reaches. `--margin M` adds, per modality and family, the
share of adjacent steps whose physics targets differ by less than M quality points: steps that
a ranking loss with that margin (`loss.rank_margin`, 2 by default) never trains on.

Usage (specs as `compare_ladders.py`: `accuracy_ladders.jsonl[:COLUMN]`, COLUMN `model`,
`physics` or a name from the rows' `others`):
    python benchmarks/ladder_steps.py weights/metrics/accuracy_ladders.jsonl \
        runs/other_test/accuracy_ladders.jsonl [--modalities]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from compare_ladders import ladder_keys, load_side, side_scores
from mediqa_train.ladders import SEVERITIES


def step_concordance(rows: Sequence[dict[str, Any]], column: str) -> dict[str, np.ndarray]:
    """group ("all" and each modality) -> share of ladders falling at each adjacent step."""
    values = ([row["physics"] for row in rows] if column == "physics"
              else side_scores(rows, column))
    falls: dict[str, list[np.ndarray]] = defaultdict(list)
    for row, v in zip(rows, values, strict=True):
        s = np.asarray(v, dtype=float)
        for group in ("all", row["modality"]):
            falls[group].append((s[:-1] > s[1:]).astype(float))
    return {g: np.mean(f, axis=0) for g, f in falls.items()}


def small_steps(rows: Sequence[dict[str, Any]], margin: float) -> dict[str, float]:
    """modality/family -> share of adjacent steps whose physics targets differ by < margin."""
    small: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        p = np.asarray(row["physics"], dtype=float)
        small[f"{row['modality']}/{row['family']}"].extend((p[:-1] - p[1:] < margin).tolist())
    return {k: float(np.mean(v)) for k, v in sorted(small.items())}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("specs", nargs="+", help="accuracy_ladders.jsonl[:COLUMN]")
    ap.add_argument("--modalities", action="store_true", help="one line per modality too")
    ap.add_argument("--margin", type=float, default=None,
                    help="also print, per modality/family of the first file, the share of "
                         "steps whose physics targets differ by less than this")
    args = ap.parse_args(argv)
    levels = (0.0, *SEVERITIES)
    header = " | ".join(f"{a:g} > {b:g}" for a, b in zip(levels[:-1], levels[1:]))
    print(f"| scorer | ladders | {header} |")
    print("|---|---|" + "---|" * len(SEVERITIES))
    seen_sets: set[tuple[tuple[str, ...], ...]] = set()
    first_rows: list[dict[str, Any]] = []
    for spec in args.specs:
        label, rows, column = load_side(spec)
        first_rows = first_rows or rows
        columns = [(label, column)]
        ladder_set = tuple(ladder_keys(rows))
        if ladder_set not in seen_sets:  # the physics target once per set of ladders
            seen_sets.add(ladder_set)
            columns.append((f"{spec.partition(':')[0]}:physics", "physics"))
        for name, col in columns:
            table = step_concordance(rows, col)
            groups = sorted(table, key=lambda g: (g != "all", g))
            for group in groups if args.modalities else ["all"]:
                shares = " | ".join(f"{v:.2f}" for v in table[group])
                print(f"| {name} {'' if group == 'all' else group} | "
                      f"{sum(1 for r in rows if group in ('all', r['modality']))} | {shares} |")
    if args.margin is not None:
        print(f"\n| modality/family | steps under {args.margin:g} physics points |\n|---|---|")
        for key, share in small_steps(first_rows, args.margin).items():
            print(f"| {key} | {share:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
