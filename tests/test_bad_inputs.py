"""Every kind of bad input gives a clear row, and the run goes on to score the rest."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mediqa_cli.io import discover
from mediqa_cli.runner import ScoreRequest, run_score
from tests.packaged import packaged_dicom


def _rows(report: Path) -> dict[str, dict[str, str]]:
    with open(report, newline="") as handle:
        return {os.path.basename(r["path"]): r for r in csv.DictReader(handle)}


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "zero.dcm").write_bytes(b"")
    shutil.copy(packaged_dicom("MR_truncated.dcm"), root / "truncated.dcm")
    shutil.copy(packaged_dicom("badVR.dcm"), root / "badvr.dcm")
    (root / "notes.dcm").write_text("this is not DICOM\n")
    (root / "fake.nii.gz").write_text("not a volume\n")
    ds = pydicom.dcmread(packaged_dicom("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(root / "nopixels.dcm")
    ds = pydicom.dcmread(packaged_dicom("CT_small.dcm"))
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder exists
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(root / "mpeg2.dcm", enforce_file_format=True)
    nan_volume = np.random.default_rng(1).normal(100, 10, (16, 16, 4)).astype(np.float32)
    nan_volume[3, 4, 1] = np.nan
    nan_volume[5, 5, 2] = np.inf
    nib.save(nib.Nifti1Image(nan_volume, np.eye(4)), root / "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.full((16, 16, 4), 7.0, np.float32), np.eye(4)), root / "flat.nii")
    from PIL import Image

    Image.fromarray(np.array([[128]], dtype=np.uint8)).save(root / "one_pixel.png")
    os.symlink("selfloop", root / "selfloop")
    os.symlink("..", root / "up")  # a folder link back to an ancestor
    shutil.copy(packaged_dicom("CT_small.dcm"), root / "good_ct.dcm")
    return root


def test_bad_inputs_give_clear_rows_and_the_good_scan_is_scored(bad_tree: Path, tmp_path: Path):
    out = tmp_path / "report.csv"
    code = run_score(ScoreRequest(paths=[str(bad_tree)], out=str(out), workers=0, quiet=True))
    assert code == 1  # some scans failed
    rows = _rows(out)
    expect = {
        "zero.dcm": ("error", "empty file"),
        "truncated.dcm": ("error", "less than expected"),
        "badvr.dcm": ("skipped", "non-image"),
        "notes.dcm": ("error", "not DICOM"),
        "fake.nii.gz": ("error", "not a readable NIfTI"),
        "nopixels.dcm": ("error", "without pixel data"),
        "mpeg2.dcm": ("error", "MPEG2"),
        "nan.nii.gz": ("error", "non-finite"),
        "flat.nii": ("error", "constant image"),
        "one_pixel.png": ("error", "too small"),
        "selfloop": ("error", "symbolic link loop"),
        "good_ct.dcm": ("ok", ""),
    }
    for name, (status, words) in expect.items():
        assert name in rows, f"no row for {name}"
        assert rows[name]["status"] == status, (name, rows[name]["error"])
        assert words in (rows[name]["error"] or ""), (name, rows[name]["error"])
    assert float(rows["good_ct.dcm"]["iqm_snr"]) > 0
    assert any(r["status"] == "skipped" and "link loop" in r["error"] for r in rows.values())


def test_unreadable_file_is_an_error_row(tmp_path: Path, monkeypatch):
    """Simulated: root (CI) can read anything, so the permission error is injected."""
    import mediqa_cli.io.discovery as discover_module

    target = tmp_path / "locked.dcm"
    shutil.copy(packaged_dicom("CT_small.dcm"), target)
    real_open = open

    def guarded_open(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if str(path) == str(target):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(discover_module, "open", guarded_open, raising=False)
    (row,) = list(discover([str(tmp_path)]))
    assert row.status == "error" and row.message == "permission denied"


def test_huge_raster_is_refused_without_decoding(tmp_path: Path, monkeypatch):
    from PIL import Image

    import mediqa_cli.io.raster as raster

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(raster, "MAX_PIXELS", 1000)
    (row,) = list(discover([str(tmp_path / "big.png")]))
    assert row.status == "error" and "too large" in row.message


def test_missing_input_path_exits_4(tmp_path: Path):
    code = run_score(ScoreRequest(paths=[str(tmp_path / "nope")], out=str(tmp_path / "r.csv")))
    assert code == 4


def test_unwritable_output_exits_5(tmp_path: Path, series_dir: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = run_score(ScoreRequest(paths=[str(series_dir)], out=str(blocker / "sub" / "r.csv")))
    assert code == 5
