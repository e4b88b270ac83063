"""`mediqa score` over every real image the packages ship (pydicom, pydicom-data, nibabel):
one row per scan, the right shapes/spacing/modalities, and a documented exit code."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from mediqa_cli.runner import ScoreRequest, run_score


def _package_dirs() -> list[str]:
    import nibabel
    import pydicom.data

    dirs = [
        os.path.dirname(pydicom.data.get_testdata_file("CT_small.dcm")),
        os.path.join(os.path.dirname(nibabel.__file__), "tests", "data"),
    ]
    try:
        import data_store

        dirs.append(os.path.join(os.path.dirname(data_store.__file__), "data"))
    except ImportError:
        pytest.skip("pydicom-data is not installed")
    return dirs


def test_every_packaged_image_gets_a_row_and_the_run_finishes(tmp_path: Path):
    out = tmp_path / "archive.csv"
    code = run_score(ScoreRequest(paths=_package_dirs(), out=str(out), workers=1, quiet=True))
    rows = list(csv.DictReader(out.open()))
    assert code == 1  # the packages hold deliberately broken files
    assert len(rows) > 150
    assert {r["status"] for r in rows} == {"ok", "error", "skipped"}
    assert all(r["error"] for r in rows if r["status"] != "ok")
    by_name = {os.path.basename(r["path"]): r for r in rows}
    # CR/US test files carry patient-name parts ("CompressedSamples^RG1") that also appear in
    # their file names, which are therefore pseudonymised: look those up by what was measured.
    measured = {(r["modality"], r["shape"]) for r in rows if r["status"] == "ok"}
    assert ("XR", "1x1955x1841") in measured  # RG1 chest CR, MONOCHROME1
    assert ("XR", "1x1760x1760") in measured  # RG3 tibia CR
    assert ("US", "1x480x640x3") in measured  # US1, JPEG 2000 colour
    # Values from tags are exact; where metadata has none, the row is empty without weights
    # and carries the context head's guess (source "predicted") with them.
    expect = {
        "emri_small.dcm": ("MR", "10x64x64", "head"),
        "CT_small.dcm": ("CT", "1x128x128", None),
        "example4d.nii.gz": (None, "24x96x128", None),
    }
    for name, (modality, shape, anatomy) in expect.items():
        row = by_name[name]
        assert row["status"] == "ok", (name, row["error"])
        assert row["shape"] == shape
        for column, value in (("modality", modality), ("anatomy", anatomy)):
            if value is None:
                assert row[f"{column}_source"] in ("", "predicted"), (name, column)
            else:
                assert row[column] == value and row[f"{column}_source"] == "dicom-tag"
    ct = by_name["CT_small.dcm"]
    spacing = [float(ct[f"spacing_{axis}_mm"]) for axis in ("slice", "row", "col")]
    assert spacing == pytest.approx([5, 0.6615, 0.6615], abs=1e-4)
    # File names holding a patient-name part are replaced by the patient's pseudonym.
    assert any(os.path.basename(r["path"]).startswith("pat-") for r in rows)
    assert not any("CompressedSamples" in r["path"] for r in rows)
