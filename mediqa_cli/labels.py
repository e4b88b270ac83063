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


def read_labels(path: Path) -> list[Label]:
    """Parse labels.csv; rows without a finite score are an error (a silent drop hides typos)."""
    labels = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "score"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: needs columns path,score (missing {', '.join(missing)})")
        for line, row in enumerate(reader, start=2):
            try:
                score = float(row["score"])
            except (TypeError, ValueError):
                score = math.nan
            if not math.isfinite(score):
                raise ValueError(f"{path}:{line}: score {row['score']!r} is not a number")
            base = path.parent
            target = row["path"] if os.path.isabs(row["path"]) else str(base / row["path"])
            labels.append(Label(os.path.normpath(target), score, row.get("modality") or None,
                                row.get("anatomy") or None))
    return labels


def join(labels: Iterable[Label], rows: Iterable[dict[str, Any]], column: str = "score"
         ) -> tuple[list[float], list[float], list[str | None], list[str]]:
    """(predictions, labels, modality per pair, unmatched label paths)."""
    by_path: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("path"):
            by_path[os.path.normpath(os.path.abspath(str(row["path"])))] = row
    preds, targets, groups, unmatched = [], [], [], []
    for label in labels:
        key = os.path.abspath(label.path)
        row = by_path.get(key) or by_path.get(os.path.dirname(key))
        value = _number(row.get(column)) if row else math.nan
        if row is None or not math.isfinite(value):
            unmatched.append(label.path)
            continue
        preds.append(value)
        targets.append(label.score)
        groups.append(label.modality or row.get("modality") or None)
    return preds, targets, groups, unmatched


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
