"""Compare two `mediqa score` CSV reports column by column (the speed work's equivalence check).

Why: a speed change must not move a score. Rows are matched by scan_id; every column must be
equal as text except the run's own timings (read_seconds, score_seconds, scored_at). Prints
each differing column with a count and an example, and exits 1 if any differs.

Usage: python benchmarks/compare_reports.py BEFORE.csv AFTER.csv
"""

from __future__ import annotations

import csv
import sys
from collections import Counter

TIMING_COLUMNS = frozenset({"read_seconds", "score_seconds", "scored_at"})


def load(path: str) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["scan_id"]: row for row in csv.DictReader(handle)}


def differences(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]
                ) -> tuple[Counter[str], dict[str, tuple[str, str, str]]]:
    """(count of differing rows per column, one example per column: scan_id, before, after)."""
    counts: Counter[str] = Counter()
    examples: dict[str, tuple[str, str, str]] = {}
    for scan_id in sorted(set(before) | set(after)):
        old, new = before.get(scan_id), after.get(scan_id)
        if old is None or new is None:
            counts["(row missing)"] += 1
            examples.setdefault("(row missing)", (scan_id, str(old is not None),
                                                  str(new is not None)))
            continue
        for column in sorted(set(old) | set(new)):
            if column in TIMING_COLUMNS or old.get(column) == new.get(column):
                continue
            counts[column] += 1
            examples.setdefault(column, (scan_id, str(old.get(column)), str(new.get(column))))
    return counts, examples


def main() -> int:
    before, after = load(sys.argv[1]), load(sys.argv[2])
    counts, examples = differences(before, after)
    columns = len(next(iter(before.values()), {}))
    if not counts:
        print(f"identical: {len(before)} rows x {columns} columns (timings excluded)")
        return 0
    for column, count in counts.most_common():
        scan_id, old, new = examples[column]
        print(f"{column}: {count} row(s) differ, e.g. {scan_id}: {old[:60]!r} -> {new[:60]!r}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
