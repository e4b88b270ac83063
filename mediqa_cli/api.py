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
from dataclasses import replace
from typing import Any

from mediqa_cli.options import (
    OPTION_NAMES,
    SCORING_OPTIONS,
    OptionError,
    ScoreOptions,
    read_config,
)
from mediqa_cli.reports import read_report
from mediqa_cli.results import ScanResult


def score(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    options: ScoreOptions | None = None,
    **overrides: Any,
) -> Iterator[ScanResult]:
    """Score every scan under `paths` (files or folders), one `ScanResult` per scan, in order.

    Options are those of `mediqa score`, as one `ScoreOptions` (`ScoreOptions(max_slices=4)`,
    or `ScoreOptions(**mediqa.read_config("mediqa.toml"))`, the command's config file) and/or
    keywords (`max_slices=4`), checked when called by the same code as the command's flags.
    Only the options that change how scans are scored apply here (workers, device, backend,
    precision, views, modality, anatomy, max_slices); a keyword for a report or log option is a
    TypeError. `workers` defaults to decoding in this process; `workers=N` starts N processes,
    so a script calling it needs an `if __name__ == "__main__":` guard. Without installed
    weights `score` stays None and the classical IQMs are still filled. Raises `OptionError`
    for a bad option and `mediqa_cli.io.InputPathError` for a missing input path; a bad file is
    a result with status "error", never an exception.
    """
    for name in sorted(overrides):
        if name not in OPTION_NAMES:
            raise TypeError(f"mediqa.score() got an unexpected keyword argument {name!r}")
        if name not in SCORING_OPTIONS:
            raise TypeError(f"mediqa.score() takes no {name!r}: it is an option of the reports "
                            "and logs of the `mediqa score` command")
    chosen = replace(options or ScoreOptions(), **overrides)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return _results([os.fspath(p) for p in paths], chosen)


def _results(paths: list[str], options: ScoreOptions) -> Iterator[ScanResult]:
    """The scoring itself, started by the first `next()` (options are checked before)."""
    from mediqa_cli.engine import run
    from mediqa_cli.io import discover
    from mediqa_cli.scoring import load_default_scorer

    scorer = load_default_scorer(options.device, options.backend, options.views,
                                 options.precision)
    for result in run(discover(paths), options, scorer):
        if result.status != "ignored":
            yield result


def version() -> str:
    import mediqa_cli

    return mediqa_cli.__version__


__all__: list[Any] = [
    "OptionError", "ScanResult", "ScoreOptions", "read_config", "read_report", "score", "version",
]
