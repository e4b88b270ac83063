"""The privacy gate: keyed pseudonyms, marker strings in no output, descriptors, logs."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from mediqa_cli.reports import journal_path
from mediqa_cli.runner import ScoreRequest, run_score
from tests.packaged import packaged_dicom

MARK = "ZQXMARK"  # a marker string planted in tags and file names


def _score(paths: list[Path], out: Path, **kwargs) -> int:
    return run_score(ScoreRequest(paths=[str(p) for p in paths], out=str(out), workers=0,
                                  quiet=True, **kwargs))


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def marked(tmp_path: Path) -> Path:
    """A tree whose tags and names carry MARK: an ok scan, an error row, a skipped row."""
    root = tmp_path / "archive" / f"{MARK}PAT_{MARK}ID" / f"20230827_{MARK}ACC"
    root.mkdir(parents=True)
    ds = pydicom.dcmread(packaged_dicom("CT_small.dcm"))
    ds.PatientName = f"{MARK}PAT^Jane"
    ds.PatientID = f"{MARK}ID"
    ds.AccessionNumber = f"{MARK}ACC"
    ds.StudyDate = "20230827"
    ds.InstitutionName = f"{MARK}HOSPITAL"
    ds.StationName = "CT01"
    ds.DeviceSerialNumber = "SN42"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.ProtocolName = f"ABDOMEN {MARK}PAT"
    ds.save_as(root / f"{MARK}ID_1.dcm")
    sr = pydicom.dcmread(packaged_dicom("CT_small.dcm"))
    sr.Modality = "SR"
    sr.PatientID = f"{MARK}ID"
    sr.SeriesInstanceUID = pydicom.uid.generate_uid()
    sr.SOPInstanceUID = pydicom.uid.generate_uid()
    sr.save_as(root / f"{MARK}ID_report.dcm")
    (root / f"{MARK}ID_broken.dcm").write_bytes(b"")
    return tmp_path / "archive"


def test_no_marker_in_any_default_output_for_ok_error_and_skipped_rows(
    marked: Path, tmp_path: Path
):
    outs = [tmp_path / "r.csv", tmp_path / "r.jsonl", tmp_path / "r.parquet"]
    for out in outs:
        assert _score([marked], out, hdf5=str(tmp_path / f"{out.suffix[1:]}.h5")) == 1
    statuses = {r["status"] for r in _csv(tmp_path / "r.csv")}
    assert statuses == {"ok", "error", "skipped"}
    for path in [*outs, *tmp_path.glob("*.h5")]:
        assert MARK.encode() not in path.read_bytes(), path.name
        assert b"CT01" not in path.read_bytes() and b"SN42" not in path.read_bytes()


def test_journal_and_verbose_logs_carry_no_marker(marked: Path, tmp_path: Path):
    out = tmp_path / "r.csv"
    script = (
        "import sys\n"
        "import mediqa_cli.runner as runner\n"
        "from mediqa_cli.reports import Journal\n"
        "lines = []\n"
        "real = Journal.append\n"
        "def keep(self, row):\n"
        "    real(self, row)\n"
        "    lines.append(open(self.path).read())\n"
        "Journal.append = keep\n"
        "from mediqa_cli.cli import app\n"
        "try:\n"
        "    app(['score', sys.argv[1], '--out', sys.argv[2], '--workers', '0', '-v'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('JOURNAL', ''.join(lines))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(marked), str(out)],
                            capture_output=True, text=True, timeout=300)
    assert "JOURNAL" in result.stdout and "scan_id" in result.stdout
    assert MARK not in result.stdout
    assert MARK not in result.stderr
    assert "Reading file" not in result.stderr  # pydicom DEBUG only with -vv
    assert not journal_path(out).exists()


def test_pseudonyms_are_keyed_and_stable_across_runs(marked: Path, tmp_path: Path):
    key = tmp_path / "site.key"
    key.write_text("a" * 64)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert _score([marked], first, pseudonym_key=str(key)) == 1
    assert _score([marked], second, pseudonym_key=str(key)) == 1
    columns = ("path", "patient_pseudonym", "study_pseudonym", "series_pseudonym",
               "scanner_pseudonym")
    a = [{c: r[c] for c in columns} for r in _csv(first)]
    b = [{c: r[c] for c in columns} for r in _csv(second)]
    assert a == b
    ok = next(r for r in _csv(first) if r["status"] == "ok")
    assert ok["patient_pseudonym"].startswith("pat-") and ok["scanner_pseudonym"]
    other = tmp_path / "other.key"
    other.write_text("b" * 64)
    assert _score([marked], tmp_path / "c.csv", pseudonym_key=str(other)) == 1
    c = next(r for r in _csv(tmp_path / "c.csv") if r["status"] == "ok")
    assert c["patient_pseudonym"] != ok["patient_pseudonym"]


def test_the_site_key_is_created_once_in_the_config_folder(
    marked: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MEDIQA_CONFIG_DIR", str(tmp_path / "config"))
    assert _score([marked], tmp_path / "a.csv") == 1
    key = tmp_path / "config" / "pseudonym.key"
    assert key.exists() and (key.stat().st_mode & 0o077) == 0
    assert _score([marked], tmp_path / "b.csv") == 1
    pseudonyms = [{r["patient_pseudonym"] for r in _csv(tmp_path / n)} for n in ("a.csv", "b.csv")]
    assert pseudonyms[0] == pseudonyms[1]


def test_descriptors_are_kept_and_dropped_by_deid_strict(marked: Path, tmp_path: Path):
    assert _score([marked], tmp_path / "r.csv") == 1
    ok = next(r for r in _csv(tmp_path / "r.csv") if r["status"] == "ok")
    assert ok["manufacturer"] == "GE MEDICAL SYSTEMS"
    assert ok["protocol_name"].startswith("ABDOMEN pat-")  # the name in it is pseudonymised
    assert float(ok["kvp"]) > 0
    assert ok["scored_at"].endswith("Z")
    assert _score([marked], tmp_path / "s.csv", deid="strict") == 1
    strict = _csv(tmp_path / "s.csv")[0]
    assert "manufacturer" not in strict and "scanner_pseudonym" not in strict
    assert "patient_pseudonym" in strict


def test_read_report_gives_equal_frames_for_every_format(tmp_path: Path, series_dir: Path):
    import pandas as pd
    from mediqa import read_report

    root = tmp_path / "in"
    shutil.copytree(series_dir, root / "series")
    shutil.copy(packaged_dicom("CT_small.dcm"), root / "ct.dcm")
    (root / "empty.dcm").write_bytes(b"")
    out = tmp_path / "r.jsonl"
    assert _score([root], out) == 1
    frames = {"jsonl": read_report(out)}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    from mediqa_cli.reports import write_report
    from mediqa_cli.results import COLUMNS

    for fmt in ("csv", "h5", "parquet"):
        target = tmp_path / f"r.{fmt}"
        write_report(rows, target, fmt, COLUMNS)
        frames[fmt] = read_report(target)
    for fmt, frame in frames.items():
        pd.testing.assert_frame_equal(frame, frames["jsonl"], obj=fmt)
    assert str(frames["csv"]["n_slices"].dtype) == "Int64"
    assert str(frames["csv"]["scored_at"].dtype).startswith("datetime64")


def _regex_reference(values: dict[str, str], text: str) -> str:
    """What the gate did before KnownValues: one alternation, longest first, whole tokens."""
    import re

    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(
        re.escape(v) for v in sorted(values, key=len, reverse=True)) + r")(?![A-Za-z0-9])",
        re.IGNORECASE)
    return pattern.sub(lambda m: values[m.group(1).lower()], text)


def test_known_values_find_what_the_regex_alternation_found():
    """Random values and texts over an alphabet rich in separators, overlaps and case: the
    dictionary scan replaces exactly what one regex of every value replaced."""
    import random

    from mediqa_cli.privacy import KnownValues

    rng = random.Random(7)
    for _ in range(300):
        # Few short words, so values overlap: one is often the start of another ("DOE",
        # "DOE^JOHN"), or sits inside a longer token ("DOEX").
        words = ["".join(rng.choice("aB0") for _ in range(3)) for _ in range(4)]
        known, values = KnownValues(), {}
        for k in range(rng.randint(1, 6)):
            value = rng.choice("^ .").join(rng.sample(words, rng.randint(1, 3)))
            if value not in known:
                known.add(value, f"<{k}>")
                values[value.lower()] = f"<{k}>"
        pieces = [rng.choice([*values, *words, "x"]) for _ in range(rng.randint(1, 6))]
        text = "".join(p.upper() if rng.random() < 0.3 else p for p in pieces
                       for p in (p, rng.choice(["", "^", " ", "_", "/", "."])))
        assert known.replace(text) == _regex_reference(values, text), (values, text)


def test_known_values_match_whole_tokens_longest_first():
    from mediqa_cli.privacy import KnownValues

    known = KnownValues()
    known.add("DOE", "pat-1")
    known.add("doe^john", "pat-2")
    known.add("ACC123", "study-1")
    assert known.replace("IM_DOE^JOHN_ACC123.dcm") == "IM_pat-2_study-1.dcm"
    assert known.replace("DOEJOHN doe") == "DOEJOHN pat-1"  # not inside a longer token
    assert known.first("no values here") is None
    assert known.first("x/Acc123/y") == "study-1"


def test_known_values_ignore_case_where_lower_case_changes_length_or_context():
    """Letters whose lower case is longer ("İ") or depends on the next letter (a final sigma):
    a value is found in any case, and the text around it keeps its positions."""
    from mediqa_cli.privacy import KnownValues

    known = KnownValues()
    known.add("İzmir", "inst-1")
    known.add("ΟΔΟΣ", "pat-1")
    assert known.replace("scan_İZMIR_ct.dcm") == "scan_inst-1_ct.dcm"
    assert known.replace("οδος é") == "pat-1 é"
    assert known.replace("ΟΔΟΣé") == "pat-1é"  # é is not an ASCII letter: a boundary
