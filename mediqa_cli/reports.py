"""Report writers: CSV (spreadsheets), JSON lines (pipes), HDF5 (per-slice detail).

Crash safety works in two layers. While a run goes, every finished row is appended and flushed
to a journal (`<out>.partial.jsonl`), so a killed run loses at most the scan in flight. At the
end the final report is written to a temporary file and renamed over the target, so readers
never see half a report. `--resume` reads rows back from the previous report and the journal.
PHI columns exist only when the user asks for them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from mediqa_cli.iqm import IQM_KEYS
from mediqa_cli.outputs import OutputError, atomic_write, describe_os_error
from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

FORMATS = ("csv", "jsonl", "h5", "parquet")

# Extensions that name each format.
EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".h5": "h5",
    ".hdf5": "h5",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Extensions of formats MedIQA does not write (spreadsheets, compression): refused, never a CSV
# under a name that promises something else.
REFUSED_EXTENSIONS = (".xlsx", ".xls", ".xlsm", ".ods", ".tsv", ".gz", ".bz2", ".xz", ".zip",
                      ".zst", ".7z", ".feather", ".arrow", ".pkl", ".pickle", ".sqlite", ".db")

# A CSV cell starting with one of these is a formula to a spreadsheet (CWE-1236): prefixed by "'".
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

IQM_COLUMNS: tuple[str, ...] = IQM_KEYS

PHYSICAL_COLUMNS: tuple[str, ...] = tuple(f"phys_{family}" for family in PHYSICAL_FAMILIES)

# Stable, documented column order (README "Report columns"). Append, never reorder.
COLUMNS: tuple[str, ...] = (
    "path",
    "scan_id",
    "status",
    "error",
    "kind",
    "modality",
    "modality_source",
    "anatomy",
    "anatomy_source",
    "shape",
    "spacing_mm",
    "n_slices",
    "n_files",
    "score",
    "grade",
    *PHYSICAL_COLUMNS,
    "salient_slices",
    "worst_slice",
    "worst_slice_score",
    *IQM_COLUMNS,
    "notes",
    "fingerprint",
    "options",
    "read_seconds",
    "score_seconds",
    "model_version",
    "mediqa_version",
)

PHI_COLUMNS: tuple[str, ...] = (
    "patient_name",
    "patient_id",
    "patient_birth_date",
    "accession_number",
    "study_date",
    "institution_name",
)

# Per-slice arrays kept for HDF5 (rows carry them under this key, CSV drops them).
DETAIL_KEY = "_slices"


def infer_format(out: str, explicit: str | None) -> str:
    """Format from --format, else from the extension (.csv, .jsonl/.json, .h5/.hdf5, .parquet).

    A name without an extension is CSV. An extension of another format (.xlsx, .csv.gz, ...) or
    one that contradicts --format is a usage error: the file would not be what its name says.
    """
    suffix = "" if out == "-" else Path(out).suffix.lower()
    if suffix in REFUSED_EXTENSIONS:
        writable = ", ".join(sorted(EXTENSIONS))
        raise ValueError(f"cannot write {suffix} reports ({out}); use one of {writable}")
    if explicit:
        aliases = {"hdf5": "h5", "json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}
        fmt = aliases.get(explicit.lower(), explicit.lower())
        if fmt not in FORMATS:
            choices = ", ".join(FORMATS)
            raise ValueError(f"unknown report format {explicit!r}; choose one of {choices}")
        named = EXTENSIONS.get(suffix)
        if named is not None and named != fmt:
            raise ValueError(f"--format {fmt} contradicts the extension of {out} ({named})")
        return fmt
    return EXTENSIONS.get(suffix, "csv")


def columns_for(include_phi: bool) -> tuple[str, ...]:
    return COLUMNS + PHI_COLUMNS if include_phi else COLUMNS


def format_cell(value: Any) -> str:
    """CSV text for one value: empty for None/NaN, compact floats, lists joined by ';'.

    Text that a spreadsheet would run as a formula (starting with = + - @ tab or CR) gets a
    leading apostrophe; numbers are never touched (a negative number stays a number).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return ";".join(format_cell(v) for v in value)
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def unescape_cell(text: str) -> str:
    """Undo format_cell's formula guard."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


def json_ready(value: Any) -> Any:
    """NaN/inf become null so every line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    return value


def public_row(row: dict[str, Any], include_phi: bool) -> dict[str, Any]:
    """The row restricted to report columns (PHI removed unless asked for)."""
    return {column: row.get(column) for column in columns_for(include_phi)}


class Journal:
    """Append-only JSON-lines log of finished rows; survives a kill, feeds --resume."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None

    def open(self, keep_existing: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Held open for the whole run on purpose: one flushed line per finished scan.
        self._handle = open(self.path, "a" if keep_existing else "w", encoding="utf-8")  # noqa: SIM115

    def append(self, row: dict[str, Any]) -> None:
        """One line per finished scan, on disk (fsync) before the next scan is reported."""
        assert self._handle is not None, "journal not open"
        try:
            self._handle.write(json.dumps(json_ready(row), separators=(",", ":")) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write the journal: {describe_os_error(exc, self.path)}") \
                from exc

    def close(self, remove: bool) -> None:
        if self._handle is not None:
            # An error here was already reported by append; the rows written so far stay.
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        if remove:
            self.path.unlink(missing_ok=True)


def journal_path(out: Path) -> Path:
    """Hidden next to the report, so a report written inside the scanned tree is not scanned."""
    return out.with_name("." + out.name + ".partial.jsonl")


def read_jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (killed mid-write) is ignored."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def load_previous_rows(out: Path, fmt: str) -> dict[str, dict[str, Any]]:
    """Rows of an earlier report and its journal, keyed by scan_id (journal wins: it is newer)."""
    rows: dict[str, dict[str, Any]] = {}
    if out.exists():
        for row in _read_report(out, fmt):
            if row.get("scan_id"):
                rows[str(row["scan_id"])] = row
    journal = journal_path(out)
    if journal.exists():
        for row in read_jsonl_rows(journal):
            if row.get("scan_id"):
                rows[str(row["scan_id"])] = row
    return rows


def _read_report(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    if fmt == "jsonl":
        yield from read_jsonl_rows(path)
    elif fmt == "csv":
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                yield {key: _parse_csv_value(key, value) for key, value in row.items()}
    elif fmt == "h5":
        yield from _read_h5_rows(path)
    elif fmt == "parquet":
        yield from _read_parquet_rows(path)


_NUMERIC = set(IQM_COLUMNS) | set(PHYSICAL_COLUMNS) | {
    "score", "worst_slice_score", "read_seconds", "score_seconds",
}
_INTEGER = {"n_slices", "n_files", "worst_slice"}


def _parse_csv_value(key: str, value: str | None) -> Any:
    """Undo format_cell closely enough that a resumed report re-serialises identically."""
    if value is None or value == "":
        return None
    value = unescape_cell(value)
    if key in _INTEGER:
        try:
            return int(value)
        except ValueError:
            return value
    if key in _NUMERIC:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def write_report(
    rows: Sequence[dict[str, Any]], out: Path, fmt: str, include_phi: bool
) -> None:
    """Write the whole report atomically (temporary file in the same folder, then rename)."""

    def write(tmp: Path) -> None:
        if fmt == "csv":
            with open(tmp, "w", newline="", encoding="utf-8") as stream:
                write_csv(rows, stream, include_phi)
        elif fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as stream:
                for row in rows:
                    stream.write(json.dumps(json_ready(public_row(row, include_phi))) + "\n")
        elif fmt == "h5":
            write_h5(rows, tmp, include_phi)
        elif fmt == "parquet":
            write_parquet(rows, tmp, include_phi)
        else:
            raise ValueError(f"unknown format {fmt}")

    try:
        atomic_write(out, write)
    except OSError as exc:
        raise OutputError(f"cannot write report: {describe_os_error(exc, out)}") from exc


def write_csv(rows: Iterable[dict[str, Any]], stream: TextIO, include_phi: bool) -> None:
    writer = CsvStreamWriter(stream, include_phi)
    for row in rows:
        writer.write(row)


class CsvStreamWriter:
    """CSV rows as they finish (`--out -`): header first, one flushed line per scan."""

    def __init__(self, stream: TextIO, include_phi: bool) -> None:
        self.columns = columns_for(include_phi)
        self.stream = stream
        self.include_phi = include_phi
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(self.columns)

    def write(self, row: dict[str, Any]) -> None:
        try:
            self._writer.writerow([format_cell(row.get(column)) for column in self.columns])
            self.stream.flush()
        except OSError as exc:  # BrokenPipeError when the reader of `--out -` goes away
            raise OutputError(f"cannot write to stdout: {describe_os_error(exc, 'stdout')}") \
                from exc


def write_h5(rows: Sequence[dict[str, Any]], path: Path, include_phi: bool) -> None:
    """One group per scan (named by scan_id) with row attributes and per-slice datasets."""
    import h5py
    import numpy as np

    with h5py.File(path, "w") as h5:
        h5.attrs["columns"] = json.dumps(list(columns_for(include_phi)))
        h5.attrs["format"] = "mediqa-report-1"
        scans = h5.create_group("scans")
        for order, row in enumerate(rows):
            group = scans.create_group(str(row.get("scan_id") or f"row{order}"))
            group.attrs["order"] = order
            group.attrs["row"] = json.dumps(json_ready(public_row(row, include_phi)))
            for column, value in public_row(row, include_phi).items():
                if value is None or isinstance(value, (list, tuple, dict)):
                    continue
                group.attrs[column] = value
            for name, values in (row.get(DETAIL_KEY) or {}).items():
                group.create_dataset(name, data=np.asarray(values))


def write_parquet(rows: Sequence[dict[str, Any]], path: Path, include_phi: bool) -> None:
    """One row per scan, the report columns (lists as lists), tagged as a MedIQA report."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = columns_for(include_phi)
    table = pa.Table.from_pylist([json_ready(public_row(row, include_phi)) for row in rows])
    if not rows:
        table = pa.table({column: pa.array([], pa.string()) for column in columns})
    table = table.replace_schema_metadata({b"mediqa": b"mediqa-report-1"})
    pq.write_table(table, path)


def _read_parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    yield from pq.read_table(path).to_pylist()


def _read_h5_rows(path: Path) -> Iterator[dict[str, Any]]:
    import h5py

    with h5py.File(path, "r") as h5:
        scans = h5.get("scans")
        if scans is None:
            return
        ordered = sorted(scans.values(), key=lambda g: int(g.attrs.get("order", 0)))
        for group in ordered:
            row = json.loads(group.attrs["row"])
            row[DETAIL_KEY] = {name: group[name][()].tolist() for name in group}
            yield row


def stdout_writer(include_phi: bool) -> CsvStreamWriter:
    return CsvStreamWriter(sys.stdout, include_phi)
