"""BIDS JSON sidecars feed the modality and descriptor columns of NIfTI rows, through the
privacy gate like DICOM tags."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

import mediqa_cli.runner as runner_module
from mediqa_cli.io import Scan
from mediqa_cli.io.nifti import read_volume
from mediqa_cli.runner import ScoreRequest, run_score
from tests.packaged import nibabel_data

MARK = "ZQXBIDSMARK"
SIDECAR = {
    "Modality": "MR",
    "Manufacturer": "Siemens",
    "ManufacturersModelName": "Prisma_fit",
    "MagneticFieldStrength": 3,
    "SoftwareVersions": "syngo MR XA30",
    "SeriesDescription": "T1w MPRAGE",
    "ProtocolName": f"t1_mprage_sag {MARK}",
    "StationName": "MRC40001",
    "DeviceSerialNumber": "166123",
    "InstitutionName": f"{MARK} Hospital",
    "PatientName": f"{MARK}^Jane",
    "PatientID": MARK,
    "RepetitionTime": 2.3,
}


@pytest.fixture(autouse=True)
def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sidecars change metadata, not pixels: score with the IQMs only (fast)."""
    monkeypatch.setattr(runner_module, "load_scorer", lambda request: None)


def _volume(folder: Path, name: str, sidecar: dict | str | None = None) -> Path:
    """A real NIfTI volume (nibabel's test anatomy) under `name`, with an optional sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    shutil.copy(nibabel_data("anatomical.nii"), path)
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        (folder / (name.split(".nii")[0] + ".json")).write_text(text)
    return path


def _only(path: Path) -> Scan:
    scan = read_volume(str(path))
    assert isinstance(scan, Scan), getattr(scan, "message", "")
    return scan


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_sidecar_fills_modality_and_descriptor_columns_without_leaking_identities(
    tmp_path: Path
):
    archive = tmp_path / "bids"
    _volume(archive / f"sub-{MARK}" / "anat", f"sub-{MARK}_T1w.nii", SIDECAR)
    out = tmp_path / "r.csv"
    assert run_score(ScoreRequest(paths=[str(archive)], out=str(out), workers=0,
                                  quiet=True)) == 0
    (row,) = _rows(out)  # the sidecar itself is no row
    assert (row["modality"], row["modality_source"]) == ("MR", "sidecar")
    assert row["manufacturer"] == "Siemens" and row["manufacturer_model"] == "Prisma_fit"
    assert float(row["field_strength_t"]) == 3.0
    assert row["software_version"] == "syngo MR XA30"
    assert row["series_description"] == "T1w MPRAGE"
    assert row["protocol_name"].startswith("t1_mprage_sag ")
    assert row["scanner_pseudonym"].startswith("scanner-")
    assert row["patient_pseudonym"].startswith("pat-")
    text = out.read_bytes()
    for secret in (MARK, "MRC40001", "166123"):
        assert secret.encode() not in text, secret

    strict = tmp_path / "strict.csv"
    run_score(ScoreRequest(paths=[str(archive)], out=str(strict), workers=0, quiet=True,
                           deid="strict"))
    (row,) = _rows(strict)
    assert "manufacturer" not in row and "protocol_name" not in row
    assert row["modality"] == "MR"


def test_sidecar_modality_wins_over_file_name_and_header_words(tmp_path: Path):
    scan = _only(_volume(tmp_path, "patient12_t1.nii", {"Modality": "CT", "KVP": 120}))
    assert (scan.modality, scan.modality_source) == ("CT", "sidecar")
    assert scan.descriptors == {"kvp": 120.0}
    field_only = _only(_volume(tmp_path, "scan.nii", {"MagneticFieldStrength": 1.5}))
    assert (field_only.modality, field_only.modality_source) == ("MR", "sidecar")
    no_sidecar = _only(_volume(tmp_path, "patient12_ct.nii"))
    assert (no_sidecar.modality, no_sidecar.modality_source) == ("CT", "file-name")


def test_sidecar_description_gives_the_anatomy(tmp_path: Path):
    scan = _only(_volume(tmp_path, "scan.nii", {"SeriesDescription": "Knee PD SAG"}))
    assert (scan.anatomy, scan.anatomy_source) == ("lower_limb", "sidecar")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_broken_sidecar_is_a_note_not_an_error(tmp_path: Path, text: str):
    scan = _only(_volume(tmp_path, "scan.nii", text))
    assert any("BIDS sidecar ignored" in note for note in scan.notes)
    assert scan.descriptors == {}


def test_editing_the_sidecar_changes_the_fingerprint(tmp_path: Path):
    path = _volume(tmp_path, "scan.nii", {"Modality": "MR"})
    before = _only(path).fingerprint
    sidecar = tmp_path / "scan.json"
    sidecar.write_text(json.dumps({"Modality": "CT"}))
    stat = sidecar.stat()
    os.utime(sidecar, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _only(path).fingerprint != before


def test_sidecar_and_dicom_header_give_the_same_descriptor_cells():
    """One scanner's history must not split by file format: a JSON sidecar and a DICOM header
    holding the same values give the same cells."""
    import pydicom

    from mediqa_cli.io.bids import _descriptors as sidecar_descriptors
    from mediqa_cli.io.dicom import _descriptors as header_descriptors

    ds = pydicom.Dataset()
    ds.Manufacturer = "ACME  Imaging\n"
    ds.MagneticFieldStrength = "3"
    ds.SoftwareVersions = ["VE11", "syngo"]
    ds.KVP = ""
    sidecar = {"Manufacturer": "ACME  Imaging\n", "MagneticFieldStrength": 3,
               "SoftwareVersions": ["VE11", "syngo"], "KVP": True, "ProtocolName": {"x": 1}}
    expected = {"manufacturer": "ACME Imaging", "field_strength_t": 3.0,
                "software_version": "VE11\\syngo"}
    assert header_descriptors(ds) == expected
    assert sidecar_descriptors(sidecar) == expected
