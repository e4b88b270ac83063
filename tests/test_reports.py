"""Reports: columns, round trips, atomic writes, resume after a kill, and no PHI by default."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import pytest

from mediqa_cli.reports import COLUMNS, PHI_COLUMNS, infer_format, journal_path
from mediqa_cli.runner import ScoreRequest, run_score
from tests.packaged import nibabel_data, packaged_dicom

TIMING = {"read_seconds", "score_seconds", "scored_at"}


@pytest.fixture
def tree(tmp_path: Path, series_dir: Path) -> Path:
    root = tmp_path / "archive"
    shutil.copytree(series_dir, root / "series")
    (root / "single").mkdir()
    for name in ("CT_small.dcm", "US1_J2KR.dcm", "JPEG-LL.dcm"):
        shutil.copy(packaged_dicom(name), root / "single" / name)
    shutil.copy(nibabel_data("anatomical.nii"), root / "anatomical.nii")
    return root


def _score(tree: Path, out: Path, **kwargs) -> int:
    return run_score(ScoreRequest(paths=[str(tree)], out=str(out), workers=0, quiet=True, **kwargs))


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_csv_has_the_documented_columns_in_order(tree: Path, tmp_path: Path):
    out = tmp_path / "r.csv"
    assert _score(tree, out) == 0
    with open(out) as handle:
        header = handle.readline().strip().split(",")
    assert tuple(header) == COLUMNS
    rows = _csv(out)
    assert len(rows) == 5
    assert all(row["status"] == "ok" for row in rows)
    series = next(r for r in rows if r["path"].endswith("series"))
    assert series["shape"] == "10x64x64" and series["n_files"] == "10"
    assert (series["rows"], series["cols"], series["channels"]) == ("64", "64", "1")
    spacing = (series["spacing_slice_mm"], series["spacing_row_mm"], series["spacing_col_mm"])
    assert spacing == ("2", "0.9", "0.8")
    # Identifiers first, then score and grade.
    assert header.index("score") == header.index("series_pseudonym") + 1
    assert header.index("grade") == header.index("score") + 1


def test_jsonl_and_hdf5_carry_the_same_rows(tree: Path, tmp_path: Path):
    assert _score(tree, tmp_path / "r.csv") == 0
    assert _score(tree, tmp_path / "r.jsonl", hdf5=str(tmp_path / "d.h5")) == 0
    csv_rows = _csv(tmp_path / "r.csv")
    json_rows = [json.loads(line) for line in open(tmp_path / "r.jsonl")]
    assert [r["scan_id"] for r in csv_rows] == [r["scan_id"] for r in json_rows]
    import pandas as pd

    report = pd.read_hdf(tmp_path / "d.h5", "report")
    assert list(report["scan_id"]) == [r["scan_id"] for r in json_rows]
    slices = pd.read_hdf(tmp_path / "d.h5", "slices")
    series_id = report.loc[report["n_slices"] == 10, "scan_id"].item()
    assert len(slices[slices["scan_id"] == series_id]) > 0
    with h5py.File(tmp_path / "d.h5") as h5:
        assert h5.attrs["format"].startswith("mediqa-report")


def test_resume_after_a_kill_gives_the_clean_report_without_duplicates(tree: Path, tmp_path: Path):
    # fp32: a resumed run packs fewer scans into each model batch, and bf16 blocks round a
    # scan's outputs differently in another batch (last digit of a `phys_*` column); packing
    # itself changes nothing in fp32 (tests/test_scoring.py), which is what this test needs.
    fp32 = {"precision": "fp32"}
    clean = tmp_path / "clean.csv"
    assert _score(tree, clean, **fp32) == 0
    clean_rows = _csv(clean)
    # Simulate a kill after two scans: their rows sit in the journal, a torn line follows.
    out = tmp_path / "killed.csv"
    assert _score(tree, tmp_path / "first.jsonl", **fp32) == 0
    lines = open(tmp_path / "first.jsonl").read().splitlines()
    journal_path(out).write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    assert _score(tree, out, resume=True, **fp32) == 0
    resumed = _csv(out)
    assert _without_timing(resumed) == _without_timing(clean_rows)
    assert len({r["scan_id"] for r in resumed}) == len(resumed)
    assert not journal_path(out).exists()
    # The two journaled scans were reused, not recomputed: their timings are the old ones.
    reused = {json.loads(line)["scan_id"]: json.loads(line) for line in lines[:2]}
    for row in resumed:
        if row["scan_id"] in reused:
            old = reused[row["scan_id"]]["read_seconds"]
            assert float(row["read_seconds"]) == pytest.approx(old)


def test_resume_rescans_a_changed_file(tree: Path, tmp_path: Path):
    out = tmp_path / "r.csv"
    assert _score(tree, out) == 0
    before = {r["scan_id"]: r for r in _csv(out)}
    target = tree / "single" / "CT_small.dcm"
    shutil.copy(packaged_dicom("MR_small.dcm"), target)
    assert _score(tree, out, resume=True) == 0
    after = _csv(out)
    assert len(after) == len(before)
    changed = next(r for r in after if r["path"] == "archive/single/CT_small.dcm")
    assert changed["modality"] == "MR"
    assert changed["fingerprint"] not in {r["fingerprint"] for r in before.values()}


def test_no_phi_in_any_output_unless_asked(tree: Path, tmp_path: Path):
    outputs = [tmp_path / "r.csv", tmp_path / "r.jsonl", tmp_path / "r.h5"]
    for out in outputs:
        assert _score(tree, out) == 0
    for out in outputs:
        data = out.read_bytes()
        for secret in (b"DOE^JANE", b"PID12345", b"19700101", b"ACC0001", b"CompressedSamples"):
            assert secret not in data, (out.name, secret)
    phi = tmp_path / "phi.csv"
    assert _score(tree, phi, include_phi=True) == 0
    rows = _csv(phi)
    assert set(PHI_COLUMNS) <= set(rows[0])
    assert any(r["patient_name"] == "DOE^JANE" and r["patient_id"] == "PID12345" for r in rows)


def test_format_is_inferred_from_the_extension():
    assert infer_format("a.csv", None) == "csv"
    assert infer_format("a.jsonl", None) == "jsonl"
    assert infer_format("a.h5", None) == "h5"
    assert infer_format("-", None) == "csv"
    assert infer_format("a.txt", "hdf5") == "h5"
    with pytest.raises(ValueError, match="unknown report format"):
        infer_format("a.csv", "xlsx")


def test_report_write_is_atomic_no_temp_files_left(tree: Path, tmp_path: Path):
    out = tmp_path / "r.csv"
    assert _score(tree, out) == 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".r.csv")]
    assert leftovers == []


def test_patient_name_in_a_folder_name_becomes_the_patient_pseudonym(
    tmp_path: Path, series_dir: Path
):
    root = tmp_path / "export" / "DOE_JANE_PID12345" / "20230827_ACC0001"
    shutil.copytree(series_dir, root)
    out = tmp_path / "r.csv"
    assert _score(root.parent.parent, out) == 0
    (row,) = _csv(out)
    parts = row["path"].split("/")
    assert parts[0] == "export" and parts[1] == row["patient_pseudonym"]
    assert parts[1].startswith("pat-") and "DOE" not in row["path"].upper()
    assert "20230827" not in row["path"] and "PID12345" not in row["path"]
    assert _score(root.parent.parent, tmp_path / "phi.csv", include_phi=True) == 0
    assert "DOE_JANE_PID12345" in _csv(tmp_path / "phi.csv")[0]["path"]


def test_path_components_match_whole_tokens_only(tmp_path: Path):
    from mediqa_cli.privacy import Privacy
    from mediqa_cli.results import ScanResult

    gate = Privacy(["/data"], key=b"k" * 32)
    result = ScanResult("id", ("/data/x.dcm",), "ok", "dicom",
                        phi={"PatientName": "Ann^Smith", "PatientID": "123"})
    gate.learn(result)
    token = gate.pseudonym("pat", "123")
    assert gate.public_path("/data/scanner/ann_smith/123/x.dcm") == (
        f"data/scanner/{token}/{token}/x.dcm"
    )
    assert gate.public_path("/data/annex/12345/x.dcm") == "data/annex/12345/x.dcm"


def test_score_seconds_is_each_scans_share_not_a_batch_average(tree: Path, tmp_path: Path):
    out = tmp_path / "r.csv"
    assert _score(tree, out) == 0
    rows = _csv(out)
    if not rows[0]["score"]:
        pytest.skip("no model weights installed")
    seconds = {r["path"].split("/")[-1]: float(r["score_seconds"]) for r in rows}
    assert len(set(seconds.values())) > 1
    assert seconds["series"] > seconds["CT_small.dcm"]  # 8 slices scored against 1
