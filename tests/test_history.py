"""The SQLite history: one transaction per run, scans counted once, pseudonymous keys only,
versioned schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mediqa_cli.history import (
    SCHEMA_VERSION,
    HistoryError,
    connect,
    count_rows,
    load_scans,
    record_run,
)


def _row(scan_id: str, score: float = 80.0, **extra: object) -> dict:
    row = {"scan_id": scan_id, "fingerprint": f"fp-{scan_id}", "status": "ok", "score": score,
           "grade": "A" if score >= 80 else "C", "modality": "MR", "anatomy": "head",
           "scanner_pseudonym": "scanner-0123456789abcdef", "protocol_name": "T1 SE",
           "phys_noise": 0.1, "model_version": "m1", "path": "site/DOE_JANE/IM1.dcm",
           "patient_pseudonym": "pat-0000000000000001", "study_pseudonym": "study-1",
           "series_pseudonym": "series-1", "notes": "PatientName DOE^JANE", "salient_slices": [1]}
    row.update(extra)
    return row


def test_recording_the_same_run_twice_does_not_double_count(tmp_path: Path):
    db = tmp_path / "qa.sqlite"
    rows = [_row("a"), _row("b", 50.0)]
    first = record_run(db, rows, "2026-01-01")
    second = record_run(db, rows, "2026-01-02")
    assert (first.n_new, second.n_new) == (2, 0)
    assert first.run_key == second.run_key
    assert count_rows(db) == (1, 2)
    assert {s["night"] for s in load_scans(db)} == {"2026-01-01"}


def test_a_scan_seen_again_keeps_its_first_night_and_takes_new_values(tmp_path: Path):
    db = tmp_path / "qa.sqlite"
    record_run(db, [_row("a", 70.0)], "2026-01-01")
    record_run(db, [_row("a", 90.0), _row("c")], "2026-01-02")
    scans = {s["scan_id"]: s for s in load_scans(db)}
    assert scans["a"]["night"] == "2026-01-01" and scans["a"]["score"] == 90.0
    assert scans["c"]["night"] == "2026-01-02"
    changed = _row("a", 60.0, fingerprint="fp-rewritten")  # the file was rewritten: a new scan
    record_run(db, [changed], "2026-01-03")
    assert count_rows(db) == (3, 3)


def test_history_keeps_pseudonymous_keys_only(tmp_path: Path):
    db = tmp_path / "qa.sqlite"
    record_run(db, [_row("a")], "2026-01-01")
    conn = sqlite3.connect(db)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(scans)")}
    assert not columns & {"path", "patient_pseudonym", "study_pseudonym", "series_pseudonym",
                          "notes", "error"}
    dump = "\n".join(conn.iterdump())
    for marker in ("DOE", "JANE", "pat-0000000000000001", "series-1", "study-1"):
        assert marker not in dump
    assert "scanner-0123456789abcdef" in dump


def test_history_is_wal_and_versioned(tmp_path: Path):
    db = tmp_path / "qa.sqlite"
    record_run(db, [_row("a")], "2026-01-01")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_or_a_foreign_database_is_refused(tmp_path: Path):
    newer = tmp_path / "newer.sqlite"
    record_run(newer, [_row("a")], "2026-01-01")
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryError, match="newer"):
        connect(newer)
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (x)")
    with pytest.raises(HistoryError, match="another program"):
        connect(foreign)
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, just some text that is long enough " * 20)
    with pytest.raises(HistoryError):
        connect(text)


def test_a_measurement_column_missing_from_an_older_file_is_added(tmp_path: Path):
    db = tmp_path / "qa.sqlite"
    record_run(db, [_row("a")], "2026-01-01")
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE scans DROP COLUMN iqm_snr")
    record_run(db, [_row("b", iqm_snr=12.5)], "2026-01-02")
    assert {s["scan_id"]: s["iqm_snr"] for s in load_scans(db)} == {"a": None, "b": 12.5}


def test_a_run_that_fails_midway_adds_nothing(tmp_path: Path):
    db = tmp_path / "qa.sqlite"
    record_run(db, [_row("a")], "2026-01-01")
    with pytest.raises(HistoryError):
        record_run(db, [_row("b"), _row("c", iqm_snr=object())], "2026-01-02")
    assert count_rows(db) == (1, 1)
