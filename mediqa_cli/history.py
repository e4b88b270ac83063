"""The quality history: every run's public rows in one SQLite file, for per-scanner trends.

Why SQLite (stdlib `sqlite3`): one file a cron job appends to and a physicist copies, readable
by any tool, no server. Choices that follow from a nightly job on a file share:

- WAL journal mode, so `mediqa trends` can read while a run writes; one transaction per run, so
  a killed run adds nothing (never half a night).
- A scan counts once: rows are keyed by (scan_id, fingerprint), and a scan seen again (a run
  scored twice, a nightly job over a growing archive, `--resume`) keeps the night it first
  appeared on, with its values refreshed. A night's chart point is therefore the scans that
  were new that night.
- Pseudonymous keys only: the scanner is its keyed pseudonym, the protocol the public
  `protocol_name` descriptor (else modality and anatomy); no path, patient, study or series
  pseudonym, note or error text is stored. Measurement columns come from the report schema
  (`mediqa_cli.results.SCHEMA`), so a new `phys_*` or `iqm_*` column is added by migration.
- The schema is versioned (`PRAGMA user_version`): `MIGRATIONS[i]` takes version i to i + 1,
  run in the transaction that opens the file; a file from a newer MedIQA is refused.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from mediqa_cli.results import BY_NAME, IQM_COLUMNS, PHYSICAL_COLUMNS

APPLICATION_ID = 0x4D514851  # "MQHQ": marks the file as a MedIQA history
NO_SCANNER = "(no scanner)"

# Report columns a history row keeps besides its keys (all public, none identifying).
MEASUREMENT_COLUMNS: tuple[str, ...] = (
    "status", "kind", "modality", "anatomy", "score", "grade", "worst_slice_score",
    *PHYSICAL_COLUMNS, *IQM_COLUMNS, "model_version", "mediqa_version", "scored_at",
)

_SQL_TYPES = {"str": "TEXT", "float": "REAL", "int": "INTEGER", "timestamp": "TEXT"}

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: runs and scans; measurement columns are added by `_add_missing_columns`.
    """
    CREATE TABLE runs (
        run_key TEXT PRIMARY KEY,
        night TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        n_rows INTEGER NOT NULL,
        n_new INTEGER NOT NULL
    );
    CREATE TABLE scans (
        scan_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        night TEXT NOT NULL,
        run_key TEXT NOT NULL REFERENCES runs(run_key),
        scanner TEXT NOT NULL,
        protocol TEXT NOT NULL,
        PRIMARY KEY (scan_id, fingerprint)
    );
    CREATE INDEX scans_by_group ON scans (scanner, protocol, night);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryError(Exception):
    """The file is not a MedIQA history this version can use; the message says why."""


@dataclass(frozen=True)
class RecordedRun:
    """What one `record_run` did: the night, the rows given and how many scans were new."""

    run_key: str
    night: str
    n_rows: int
    n_new: int


def connect(path: str | os.PathLike[str], create: bool = True) -> sqlite3.Connection:
    """Open (and create or migrate) a history file; HistoryError if it is not one."""
    target = Path(path)
    if not create and not target.exists():
        raise HistoryError(f"no history file at {target}")
    try:
        conn = sqlite3.connect(str(target), timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{target} is not a usable MedIQA history: {exc}") from exc
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION in one transaction (nothing changes if it fails)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        if app not in (0, APPLICATION_ID) or (app == 0 and has_tables and version == 0):
            raise HistoryError("the file is an SQLite database of another program")
        if version > SCHEMA_VERSION:
            raise HistoryError(f"the history has schema version {version}, newer than this "
                               f"MedIQA reads ({SCHEMA_VERSION}); upgrade MedIQA")
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
        _add_missing_columns(conn)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Measurement columns the report schema has and the file lacks (a newer MedIQA's IQM)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(scans)")}
    for column in MEASUREMENT_COLUMNS:
        if column not in present:
            sql_type = _SQL_TYPES[BY_NAME[column].dtype]
            conn.execute(f'ALTER TABLE scans ADD COLUMN "{column}" {sql_type}')


def group_keys(row: dict[str, Any]) -> tuple[str, str]:
    """(scanner, protocol) of a public row: the scanner pseudonym, and the protocol name (else
    series description, else modality and anatomy) - the units a QA programme follows."""
    scanner = row.get("scanner_pseudonym") or NO_SCANNER
    protocol = row.get("protocol_name") or row.get("series_description")
    if not protocol:
        protocol = f"{row.get('modality') or '?'} {row.get('anatomy') or '?'}"
    return str(scanner), str(protocol)


def run_key(rows: Sequence[dict[str, Any]]) -> str:
    """A run's identity: the scans (ids + fingerprints) and the model that scored them."""
    digest = hashlib.sha256()
    for scan_id, fingerprint, model in sorted(
        (str(r.get("scan_id")), str(r.get("fingerprint")), str(r.get("model_version")))
        for r in rows
    ):
        digest.update(f"{scan_id}|{fingerprint}|{model}\n".encode())
    return digest.hexdigest()[:24]


def record_run(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]],
               night: date | str | None = None) -> RecordedRun:
    """Append one run's public rows (one transaction). `night` defaults to today (local date).

    Rows without a scan_id are ignored. A scan already in the history keeps its night and gets
    the new values, so recording the same run twice changes nothing.
    """
    kept = [r for r in rows if r.get("scan_id")]
    when = _night_text(night)
    key = run_key(kept)
    columns = ["scan_id", "fingerprint", "night", "run_key", "scanner", "protocol",
               *MEASUREMENT_COLUMNS]
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in MEASUREMENT_COLUMNS)
    statement = (f"INSERT INTO scans ({names}) VALUES ({marks}) "
                 f"ON CONFLICT (scan_id, fingerprint) DO UPDATE SET {updates}")
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.execute("SELECT count(*) FROM scans").fetchone()[0]
            conn.execute(
                "INSERT INTO runs (run_key, night, recorded_at, n_rows, n_new) VALUES (?, ?, ?, "
                "?, 0) ON CONFLICT (run_key) DO NOTHING",
                (key, when, datetime.now().astimezone().isoformat(timespec="seconds"),
                 len(kept)))
            values = []
            for row in kept:
                scanner, protocol = group_keys(row)
                measured = [_cell(row.get(c)) for c in MEASUREMENT_COLUMNS]
                values.append([str(row["scan_id"]), str(row.get("fingerprint") or ""), when, key,
                               scanner, protocol, *measured])
            conn.executemany(statement, values)
            new = conn.execute("SELECT count(*) FROM scans").fetchone()[0] - before
            conn.execute("UPDATE runs SET n_new = n_new + ? WHERE run_key = ?", (new, key))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"cannot write the history {path}: {exc}") from exc
    finally:
        conn.close()
    return RecordedRun(key, when, len(kept), new)


def _night_text(night: date | str | None) -> str:
    if night is None:
        return date.today().isoformat()
    if isinstance(night, date):
        return night.isoformat()
    return date.fromisoformat(str(night)).isoformat()


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def load_scans(path: str | os.PathLike[str], since: str | None = None) -> list[dict[str, Any]]:
    """Every scored (status ok, score present) scan of the history as a dict, by night."""
    conn = connect(path, create=False)
    try:
        query = ("SELECT * FROM scans WHERE status = 'ok' AND score IS NOT NULL"
                 + (" AND night >= ?" if since else "") + " ORDER BY night, scanner, protocol")
        return [dict(row) for row in conn.execute(query, (since,) if since else ())]
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"cannot read the history {path}: {exc}") from exc
    finally:
        conn.close()


def count_rows(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(runs, scans) stored: for tests and the log line after a run."""
    conn = connect(path, create=False)
    try:
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        scans = conn.execute("SELECT count(*) FROM scans").fetchone()[0]
        return int(runs), int(scans)
    finally:
        conn.close()
