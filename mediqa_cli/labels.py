"""Join expert labels (labels.csv) with report rows, for `mediqa eval` and fine-tuning checks.

labels.csv holds `path,score` (any scale) and optionally `modality`, `anatomy`. A label matches
a report row when its path is the row's path, or a file inside a multi-file series' folder.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Label:
    path: str
    score: float
    modality: str | None = None
    anatomy: str | None = None


def read_labels(path: str | os.PathLike[str]) -> list[Label]:
    """Parse labels.csv (for `mediqa eval` and `mediqa-train finetune`).

    Column names are matched without case or surrounding spaces (spreadsheet exports vary, and
    may start with a byte-order mark); relative paths are resolved against the CSV's folder.
    A row without a finite score, or a file without rows, is an error: a silent drop hides typos.
    """
    source = Path(path)
    labels = []
    with open(source, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "path" not in fields or "score" not in fields:
            raise ValueError(f"{source}: needs 'path' and 'score' columns, found {fields}")
        for line, raw in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            try:
                score = float(row["score"])
            except ValueError:
                score = math.nan
            if not math.isfinite(score):
                raise ValueError(f"{source}:{line}: score {row['score']!r} is not a number")
            target = str((source.parent / row["path"]).resolve())
            labels.append(Label(target, score, row.get("modality") or None,
                                row.get("anatomy") or None))
    if not labels:
        raise ValueError(f"{source}: no labelled rows")
    return labels


def join(labels: Iterable[Label], rows: Iterable[dict[str, Any]], column: str = "score"
         ) -> tuple[list[float], list[float], list[str | None], list[str]]:
    """(predictions, labels, modality per pair, unmatched label paths)."""
    by_path: dict[str, dict[str, Any]] = {}
    by_relative: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("path"):
            shown = str(row["path"])
            by_path[os.path.realpath(shown)] = row
            if not os.path.isabs(shown):
                # Reports give paths relative to the input's parent folder: match the tail.
                by_relative[os.path.normpath(shown)] = row
    preds, targets, groups, unmatched = [], [], [], []
    for label in labels:
        key = os.path.realpath(label.path)
        row = (by_path.get(key) or by_path.get(os.path.dirname(key))
               or _by_tail(by_relative, key) or _by_tail(by_relative, os.path.dirname(key)))
        value = _number(row.get(column)) if row else math.nan
        if row is None or not math.isfinite(value):
            unmatched.append(label.path)
            continue
        preds.append(value)
        targets.append(label.score)
        groups.append(label.modality or row.get("modality") or None)
    return preds, targets, groups, unmatched


def _by_tail(rows: dict[str, dict[str, Any]], path: str) -> dict[str, Any] | None:
    """The row whose relative path is the longest tail of `path`, if any."""
    parts = path.split(os.sep)
    for start in range(1, len(parts)):
        row = rows.get(os.sep.join(parts[start:]))
        if row is not None:
            return row
    return None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
