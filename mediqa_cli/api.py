"""The Python API: score scans and read reports from code (`import mediqa`).

    import mediqa
    for result in mediqa.score(["/archive/2026-11"], max_slices=8):
        print(result.scan_id, result.status, result.score, result.grade)
    frame = mediqa.read_report("report.parquet")   # any format -> pandas.DataFrame
    print(frame.groupby("scanner_pseudonym")["score"].median())

`score` yields raw `ScanResult`s, in the process that called it: they hold the scan's paths and
tags (nothing has left the machine). Pass them through `mediqa_cli.privacy.Privacy.publish`
before writing them anywhere; `mediqa score` does exactly that.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from mediqa_cli.reports import read_report
from mediqa_cli.results import ScanResult


def score(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    max_slices: int = 8,
    modality: str | None = None,
    anatomy: str | None = None,
    workers: int = 0,
    device: str = "auto",
    backend: str = "eager",
    views: int = 1,
) -> Iterator[ScanResult]:
    """Score every scan under `paths` (files or folders), one `ScanResult` per scan, in order.

    The options mean what `mediqa score`'s do. Without installed weights `score` stays None and
    the classical IQMs are still filled. Raises `mediqa_cli.io.InputPathError` for a missing
    input path; a bad file is a result with status "error", never an exception.
    """
    from mediqa_cli.engine import EngineOptions, run
    from mediqa_cli.io import discover
    from mediqa_cli.scoring import load_default_scorer

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    names = [os.fspath(p) for p in paths]
    scorer = load_default_scorer(device, backend, views)
    options = EngineOptions(workers=workers, max_slices=max_slices, modality=modality,
                            anatomy=anatomy)
    for result in run(discover(names), options, scorer):
        if result.status != "ignored":
            yield result


def version() -> str:
    import mediqa_cli

    return mediqa_cli.__version__


__all__: list[Any] = ["ScanResult", "read_report", "score", "version"]
