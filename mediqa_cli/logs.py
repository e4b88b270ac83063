"""Log lines: our logger's levels, text or JSON lines, on stderr and in an optional log file.

Why here: a nightly job's log is read by people (text) and by log collectors (one JSON object a
line), and both must say which scan a line is about without naming it. Per-scan lines carry the
report's `scan_id` and the published (privacy-gated) `path` as record attributes; the JSON form
writes them as fields, so a collector joins a line to its report row. Every line still passes
the run's privacy filter (`mediqa_cli.privacy.Privacy.log_filter`) before any handler formats it.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TEXT_FORMAT = "%(asctime)s mediqa %(levelname)s %(message)s"
LIBRARIES = ("pydicom", "nibabel", "PIL", "h5py", "tifffile")
# Record attributes that per-scan lines carry (`log.info(..., extra=scan_fields(row))`).
SCAN_FIELDS = ("scan_id", "path", "status")


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test runner swaps and closes it; a live
    progress bar redirects it above the bar)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp (UTC, ISO 8601), level, message, and the scan's
    `scan_id`/`path`/`status` when the line is about one scan."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in SCAN_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def formatter(kind: str) -> logging.Formatter:
    """The formatter of `--log-format` (text or json)."""
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)


def scan_fields(row: dict[str, Any]) -> dict[str, Any]:
    """`extra=` for a line about one published row: its key, public path and status."""
    return {name: row.get(name) for name in SCAN_FIELDS}


def setup_logging(quiet: bool, verbose: int, log_format: str = "text") -> None:
    """Our logger at INFO (-q: WARNING, -v: DEBUG); libraries stay silent unless -vv.

    Library lines (pydicom's "Reading file '<path>'", decoder tracebacks, header warnings) name
    raw paths: they are shown only when asked for twice, and still pass the privacy filter.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = StderrHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("mediqa").setLevel(level)
    libraries = logging.DEBUG if verbose >= 2 else logging.CRITICAL
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(libraries)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(libraries)
    if verbose >= 2:
        logging.getLogger().setLevel(logging.DEBUG)
    warnings.filterwarnings("default")


def open_log_file(path: str | Path, log_format: str) -> logging.Handler:
    """A handler appending to `path` (a nightly job's log grows), in the given format; the
    caller adds it to the root logger and removes and closes it when the run ends."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(target, mode="a", encoding="utf-8")
    handler.setFormatter(formatter(log_format))
    return handler


__all__ = ["JsonFormatter", "open_log_file", "scan_fields", "setup_logging"]
