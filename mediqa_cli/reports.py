"""Report sinks: CSV (spreadsheets), JSON lines (pipes), HDF5 and Parquet (pandas), the journal.

Every sink writes public rows: what `mediqa_cli.privacy.Privacy.publish` made of a `ScanResult`,
in the column order and types of `mediqa_cli.results.SCHEMA`. Crash safety works in two layers.
While a run goes, every finished row is appended and fsynced to a journal
(`.<out>.partial.jsonl`), so a killed run loses at most the scans in flight. At the end the
report is written to a temporary file and renamed over the target (`mediqa_cli.outputs`), so
readers never see half a report. `--resume` reads rows back from the report and the journal;
`read_report` gives the same pandas frame from any of the four formats.
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

from mediqa_cli.outputs import OutputError, atomic_write, describe_os_error
from mediqa_cli.results import (  # noqa: F401 - re-exported: the schema's names
    BY_NAME,
    COLUMNS,
    DETAIL_KEY,
    IQM_COLUMNS,
    PHI_COLUMNS,
    PHYSICAL_COLUMNS,
    columns_for,
)

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
        for row in read_rows(out, fmt):
            if row.get("scan_id"):
                rows[str(row["scan_id"])] = row
    journal = journal_path(out)
    if journal.exists():
        for row in read_jsonl_rows(journal):
            if row.get("scan_id"):
                rows[str(row["scan_id"])] = row
    return rows


def read_rows(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    """Rows of a report as Python values (None for empty cells), any format."""
    if fmt == "jsonl":
        yield from read_jsonl_rows(path)
    elif fmt == "csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle):
                yield {key: parse_cell(key, value) for key, value in row.items()}
    elif fmt == "h5":
        yield from _read_h5_rows(path)
    elif fmt == "parquet":
        yield from _read_parquet_rows(path)


def parse_cell(key: str, value: str | None) -> Any:
    """Undo format_cell by the schema's type, so a resumed report re-serialises identically."""
    if value is None or value == "":
        return None
    value = unescape_cell(value)
    column = BY_NAME.get(key)
    dtype = column.dtype if column else "str"
    try:
        if dtype == "int":
            return int(value)
        if dtype == "float":
            return float(value)
        if dtype == "list[int]":
            return [int(v) for v in value.split(";") if v]
    except ValueError:
        return value
    return value


def write_report(rows: Sequence[dict[str, Any]], out: Path, fmt: str,
                 columns: Sequence[str]) -> None:
    """Write the whole report atomically (temporary file in the same folder, then rename)."""

    def write(tmp: Path) -> None:
        if fmt == "csv":
            with open(tmp, "w", newline="", encoding="utf-8") as stream:
                write_csv(rows, stream, columns)
        elif fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as stream:
                for row in rows:
                    flat = {column: row.get(column) for column in columns}
                    stream.write(json.dumps(json_ready(flat)) + "\n")
        elif fmt == "h5":
            write_h5(rows, tmp, columns)
        elif fmt == "parquet":
            write_parquet(rows, tmp, columns)
        else:
            raise ValueError(f"unknown format {fmt}")

    try:
        atomic_write(out, write)
    except OSError as exc:
        raise OutputError(f"cannot write report: {describe_os_error(exc, out)}") from exc


def write_csv(rows: Iterable[dict[str, Any]], stream: TextIO, columns: Sequence[str]) -> None:
    writer = CsvStreamWriter(stream, columns)
    for row in rows:
        writer.write(row)


class CsvStreamWriter:
    """CSV rows as they finish (`--out -`): header first, one flushed line per scan."""

    def __init__(self, stream: TextIO, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self.stream = stream
        self._writer = csv.writer(stream, lineterminator="\n")
        self._write(list(self.columns))

    def write(self, row: dict[str, Any]) -> None:
        self._write([format_cell(row.get(column)) for column in self.columns])

    def _write(self, cells: list[str]) -> None:
        try:
            self._writer.writerow(cells)
            self.stream.flush()
        except OSError as exc:  # BrokenPipeError when the reader of `--out -` goes away
            raise OutputError(f"cannot write to stdout: {describe_os_error(exc, 'stdout')}") \
                from exc


def stdout_writer(columns: Sequence[str]) -> CsvStreamWriter:
    return CsvStreamWriter(sys.stdout, columns)


def _arrow_schema(columns: Sequence[str]) -> Any:
    import pyarrow as pa

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(),
             "list[int]": pa.list_(pa.int64()), "timestamp": pa.timestamp("s", tz="UTC")}
    return pa.schema([(c, types[BY_NAME[c].dtype if c in BY_NAME else "str"]) for c in columns],
                     metadata={b"mediqa": b"mediqa-report-2"})


def _timestamp(value: Any) -> Any:
    from datetime import datetime

    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def write_parquet(rows: Sequence[dict[str, Any]], path: Path, columns: Sequence[str]) -> None:
    """One row per scan, typed by the schema (lists as lists, scored_at as a UTC timestamp)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(columns)
    data = {}
    for column in columns:
        values = [json_ready(row.get(column)) for row in rows]
        if column in BY_NAME and BY_NAME[column].dtype == "timestamp":
            values = [_timestamp(v) for v in values]
        data[column] = values
    pq.write_table(pa.table(data, schema=schema), path)


def _read_parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for row in pq.read_table(path).to_pylist():
        for key, value in row.items():
            if hasattr(value, "strftime"):
                row[key] = value.strftime("%Y-%m-%dT%H:%M:%SZ")
        yield row


def write_h5(rows: Sequence[dict[str, Any]], path: Path, columns: Sequence[str]) -> None:
    """pandas-readable tables: `report` (one row per scan, `pd.read_hdf(path, "report")`),
    `slices` (one row per assessed slice) and `saliency` (one row per slice of each volume)."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {column: [_h5_cell(column, row.get(column)) for row in rows] for column in columns},
        columns=list(columns),
    )
    for column in columns:
        dtype = BY_NAME[column].dtype if column in BY_NAME else "str"
        if dtype in ("int", "float"):
            frame[column] = frame[column].astype("float64")
        else:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), "")
    slices, saliency = [], []
    for row in rows:
        detail = row.get(DETAIL_KEY) or {}
        indices = detail.get("slice_index") or []
        for k, index in enumerate(indices):
            entry = {"scan_id": row.get("scan_id"), "slice_index": int(index),
                     "slice_weight": _at(detail.get("slice_weight"), k),
                     "slice_quality": _at(detail.get("slice_quality"), k)}
            severities = _at(detail.get("slice_severities"), k) or []
            for name, value in zip(PHYSICAL_COLUMNS, severities):
                entry[name] = value
            slices.append(entry)
        for index, value in enumerate(detail.get("saliency_all_slices") or []):
            saliency.append({"scan_id": row.get("scan_id"), "slice": index, "saliency": value})
    slice_columns = ["scan_id", "slice_index", "slice_weight", "slice_quality",
                     *PHYSICAL_COLUMNS]
    slice_frame = pd.DataFrame(slices, columns=slice_columns)
    for column in slice_columns[1:]:
        slice_frame[column] = slice_frame[column].astype("float64")
    saliency_frame = pd.DataFrame(saliency, columns=["scan_id", "slice", "saliency"])
    saliency_frame[["slice", "saliency"]] = saliency_frame[["slice", "saliency"]].astype(
        np.float64)
    with pd.HDFStore(path, mode="w") as store:
        # An empty table is not written (PyTables cannot hold one): the reader handles that.
        for key, table in (("report", frame), ("slices", slice_frame),
                           ("saliency", saliency_frame)):
            if len(table) or key == "report":
                store.put(key, table, format="table", min_itemsize=_itemsize(table),
                          track_times=False)
    import h5py

    with h5py.File(path, "a") as h5:
        h5.attrs["format"] = "mediqa-report-2"
        h5.attrs["columns"] = json.dumps(list(columns))


def _itemsize(frame: Any) -> dict[str, int]:
    sizes = {}
    for column in frame.columns:
        if frame[column].dtype == object:
            longest = max((len(str(v).encode()) for v in frame[column]), default=1)
            sizes[column] = max(1, longest)
    return sizes


def _at(values: Any, index: int) -> Any:
    try:
        return values[index]
    except (TypeError, IndexError):
        return None


def _h5_cell(column: str, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return value


def _read_h5_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pandas as pd

    with pd.HDFStore(path, mode="r") as store:
        frame = store.get("report")
        slices = store.get("slices") if "slices" in store else pd.DataFrame(
            columns=["scan_id", "slice_index", "slice_weight", "slice_quality"])
        saliency = store.get("saliency") if "saliency" in store else pd.DataFrame(
            columns=["scan_id", "slice", "saliency"])
    by_scan = {key: group for key, group in slices.groupby("scan_id", sort=False)}
    sal_by_scan = {key: group for key, group in saliency.groupby("scan_id", sort=False)}
    for record in frame.to_dict("records"):
        row = {}
        for key, value in record.items():
            if isinstance(value, float) and math.isnan(value) or value == "":
                value = None
            column = BY_NAME.get(key)
            if column is not None and value is not None:
                if column.dtype == "int":
                    value = int(value)
                elif column.dtype == "list[int]":
                    value = [int(v) for v in str(value).split(";") if v]
            row[key] = value
        detail: dict[str, Any] = {}
        group = by_scan.get(row.get("scan_id"))
        if group is not None:
            detail["slice_index"] = [int(v) for v in group["slice_index"]]
            detail["slice_weight"] = [float(v) for v in group["slice_weight"]]
            if group["slice_quality"].notna().any():
                detail["slice_quality"] = [float(v) for v in group["slice_quality"]]
                detail["slice_severities"] = group[list(PHYSICAL_COLUMNS)].to_numpy().tolist()
        sal = sal_by_scan.get(row.get("scan_id"))
        if sal is not None:
            detail["saliency_all_slices"] = [float(v) for v in sal["saliency"]]
        row[DETAIL_KEY] = detail
        yield row


def read_report(path: str | os.PathLike[str], format: str | None = None) -> Any:
    """A report of any format (CSV, JSONL, HDF5, Parquet) as a pandas DataFrame, one row per
    scan, columns in schema order with the schema's types: equal frames for one run's reports.

    Types: text as object (None where empty), integers as nullable Int64, floats as float64,
    `salient_slices` as lists of int, `scored_at` as a UTC datetime.
    """
    import pandas as pd

    target = Path(path)
    fmt = infer_format(str(target), format)
    rows = [{k: v for k, v in row.items() if k != DETAIL_KEY} for row in read_rows(target, fmt)]
    present = [c for c in columns_for(True) if any(c in row for row in rows)]
    if not rows:
        present = list(COLUMNS)
    frame = pd.DataFrame([[row.get(c) for c in present] for row in rows], columns=present)
    for column in present:
        dtype = BY_NAME[column].dtype
        if dtype == "int":
            frame[column] = pd.array(
                [None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
                 for v in frame[column]], dtype="Int64")
        elif dtype == "float":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        elif dtype == "timestamp":
            frame[column] = pd.to_datetime(frame[column], utc=True)
        elif dtype == "list[int]":
            frame[column] = [None if v is None else [int(x) for x in v] for v in frame[column]]
            frame[column] = frame[column].astype(object)
        else:
            frame[column] = [None if v is None or (isinstance(v, float) and math.isnan(v))
                             else str(v) for v in frame[column]]
            frame[column] = frame[column].astype(object)
    return frame
