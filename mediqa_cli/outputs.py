"""Where reports may be written, and how: never over an input or a file that is not a report.

A nightly job that is given a wrong `--out` must not destroy data. Before any scan is read, each
output target is checked: device nodes, FIFOs and folders are refused outright; a file that the
run reads as input (given on the command line, or lying inside an input folder) is refused even
with `--force`; any other existing file that is not a MedIQA report of the same format is refused
unless `--force`. A symbolic link is followed, and its target is what gets checked and replaced.

Writes go to a temporary file in the target's folder, are flushed to disk, and are renamed over
the target, so a reader never sees half a report. The new file gets the mode a plain `open()`
would give (0666 minus the umask), or keeps the mode of the report it replaces.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


class OutputError(Exception):
    """A report, journal or stream could not be written; the message is one line for the user."""


def describe_os_error(exc: OSError, target: str | os.PathLike[str]) -> str:
    """One readable line for an OSError on an output (disk full, read-only, broken pipe...)."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason} ({target})"


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else set back."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def target_problem(
    out: Path, fmt: str, inputs: Iterable[str], force: bool
) -> str | None:
    """Why `out` must not be written (one line), or None when it is safe to write."""
    return _file_target_problem(out, inputs, force, lambda p: is_report(p, fmt),
                                f"a MedIQA {fmt} report", "replace", atomic=True)


def log_target_problem(log: Path, inputs: Iterable[str], force: bool) -> str | None:
    """Why `--log-file` must not be appended to (one line), or None.

    The same rules as a report's, for a file that grows: never an input (nor an existing file
    inside an input folder, unless it is a MedIQA log), a folder, a device or a pipe; any other
    existing file that is not a MedIQA log needs `--force`.
    """
    return _file_target_problem(log, inputs, force, is_log, "a MedIQA log", "append to",
                                atomic=False)


def _file_target_problem(path: Path, inputs: Iterable[str], force: bool,
                         ours: Callable[[Path], bool], what: str, verb: str,
                         atomic: bool) -> str | None:
    """The one set of rules for a file MedIQA writes: never an input (nor an existing file
    inside an input folder that is not `ours`), a folder, a device or a pipe; an existing
    non-empty file that is not `ours` only with `force`. `atomic` (a temporary file renamed
    over it) also needs a writable folder; appending to an existing file does not."""
    real = Path(os.path.realpath(path))
    where = _input_relation(real, inputs)
    if where == "given" or (where == "inside" and real.exists()
                            and not (real.is_file() and ours(real))):
        return f"{path} is one of the inputs; refusing to write to it (--force does not apply)"
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return _folder_problem(real)
    except OSError as exc:
        return describe_os_error(exc, path)
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a folder"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file (device, pipe or socket); refusing to {verb} it"
    if st.st_size > 0 and not ours(real) and not force:
        return f"{path} exists and is not {what}; refusing to {verb} it (--force to do so)"
    if not os.access(real, os.W_OK):
        return f"{path} is not writable"
    return _folder_problem(real) if atomic else None


def is_log(path: Path) -> bool:
    """Does `path` start with a MedIQA log line (text or JSON)? Cheap: reads the first line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline(4096)
    except OSError:
        return False
    if _TEXT_LOG_LINE.match(first):
        return True
    try:
        entry = json.loads(first)
    except ValueError:
        return False
    return isinstance(entry, dict) and {"timestamp", "level", "message"} <= entry.keys()


_TEXT_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} mediqa [A-Z]+ ")


def _folder_problem(real: Path) -> str | None:
    parent = real.parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create {parent}: {exc.strerror or exc}"
    if not parent.is_dir():
        return f"{parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"folder {parent} is not writable"
    return None


def _input_relation(real: Path, inputs: Iterable[str]) -> str | None:
    """"given" when `real` is an input path itself, "inside" when it lies in an input folder."""
    inside = False
    for given in inputs:
        source = Path(os.path.realpath(given))
        if real == source:
            return "given"
        inside = inside or (source.is_dir() and source in real.parents)
    return "inside" if inside else None


def is_report(path: Path, fmt: str) -> bool:
    """Does `path` hold a MedIQA report (or journal) of format `fmt`? Cheap: reads a header."""
    try:
        if fmt == "csv":
            with open(path, encoding="utf-8-sig", errors="replace") as handle:
                header = handle.readline().strip().split(",")
            return "scan_id" in header and "status" in header
        if fmt == "jsonl":
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if line.strip():
                        row = json.loads(line)
                        return isinstance(row, dict) and "scan_id" in row
            return True
        if fmt == "h5":
            import h5py

            with h5py.File(path, "r") as h5:
                return str(h5.attrs.get("format", "")).startswith("mediqa-report")
        if fmt == "parquet":
            import pyarrow.parquet as pq

            meta = pq.read_schema(path).metadata or {}
            return b"mediqa" in meta
        if fmt == "html":
            with open(path, encoding="utf-8", errors="replace") as handle:
                return '<meta name="generator" content="mediqa' in handle.read(4096)
        if fmt == "sqlite":
            from mediqa_cli.history import APPLICATION_ID

            with open(path, "rb") as handle:
                header = handle.read(72)
            return (header[:16] == b"SQLite format 3\0"
                    and int.from_bytes(header[68:72], "big") == APPLICATION_ID)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return False


def atomic_write(out: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` for a temporary file next to `out`, fsync it, rename it over `out`.

    The rename lands on a symbolic link's target (the link stays). Mode: that of the file being
    replaced, or 0666 minus the umask for a new one (mkstemp's 0600 is not what users expect).
    """
    real = Path(os.path.realpath(out))
    real.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(real).st_mode)
    except OSError:
        mode = 0o666 & ~current_umask()
    handle, tmp_name = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as done:
            os.fsync(done.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    finally:
        tmp.unlink(missing_ok=True)
