"""The progress bar of `mediqa score`: total, rate and time left on a terminal, nothing otherwise.

Why files, not scans: how many scans an archive holds is known only once every DICOM header has
been read and grouped, which is the run itself. How many files it holds is a cheap walk (names
only, no reads), done in a background thread while scoring starts; every result accounts for
the files it came from, so the bar has a total and an ETA within seconds. Under cron, in a pipe
or with -q the bar is off: the log lines do that job there.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from mediqa_cli.io.discovery import split_entries
from mediqa_cli.results import ScanResult


def count_files(paths: Iterable[str], exclude: Iterable[str] = (),
                stop: threading.Event | None = None) -> int:
    """Files under `paths` as discovery walks them (links to folders followed once)."""
    excluded = frozenset(os.path.abspath(p) for p in exclude)
    total = 0
    visited: set[tuple[int, int]] = set()
    for path in paths:
        if not os.path.isdir(path):
            total += 1
            continue
        stack = [path]
        while stack:
            if stop is not None and stop.is_set():
                return total
            folder = stack.pop()
            try:
                st = os.stat(folder)
                if (st.st_dev, st.st_ino) in visited:
                    continue
                visited.add((st.st_dev, st.st_ino))
                entries = list(os.scandir(folder))
            except OSError:
                total += 1  # discovery reports the folder as one error row
                continue
            files, subfolders = split_entries(entries, excluded)
            total += len(files)
            stack.extend(subfolders)
    return total


def files_of(result: ScanResult) -> int:
    """Files a result stands for (a row read back by --resume knows it from its column)."""
    if result.n_files:
        return result.n_files
    try:
        return max(1, int(result.get("n_files") or 1))
    except (TypeError, ValueError):
        return 1


class ProgressBar:
    """`with ProgressBar(paths, exclude, enabled) as advance:` call `advance(result)` per result.

    `console` is for tests (a rich Console writing to a buffer); by default the bar draws on
    stderr, and log lines written meanwhile print above it.
    """

    def __init__(self, paths: Iterable[str], exclude: Iterable[str] = (), enabled: bool = True,
                 console: Any = None) -> None:
        self.paths, self.exclude = list(paths), list(exclude)
        self.enabled = enabled
        self.console = console
        self._progress: Any = None
        self._stop = threading.Event()

    @staticmethod
    def wanted(quiet: bool) -> bool:
        """On a terminal only, and not under -q."""
        return not quiet and sys.stderr.isatty()

    def __enter__(self) -> Callable[[ScanResult], None]:
        if not self.enabled:
            return lambda result: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            TaskProgressColumn(),
            TextColumn("{task.fields[scans]} scans"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console or Console(stderr=True),
            redirect_stderr=True,
            transient=True,
        )
        self._progress.start()
        task = self._progress.add_task("scoring", total=None, scans=0, rate="")
        progress = self._progress

        def set_total() -> None:
            total = count_files(self.paths, self.exclude, self._stop)
            if not self._stop.is_set():
                progress.update(task, total=max(total, progress.tasks[0].completed))

        threading.Thread(target=set_total, name="mediqa-count", daemon=True).start()

        def advance(result: ScanResult) -> None:
            state = progress.tasks[0]
            scans = state.fields["scans"] + (result.status != "ignored")
            elapsed = state.elapsed or 0.0
            rate = f"{scans / elapsed:.1f} scans/s" if elapsed > 0 else ""
            progress.update(task, advance=files_of(result), scans=scans, rate=rate)

        return advance

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._progress is not None:
            self._progress.stop()


__all__ = ["ProgressBar", "count_files"]
