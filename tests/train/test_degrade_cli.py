"""`mediqa-train degrade`: degraded copies of real scans in their own format, read back by the
product's readers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from mediqa_train.cli import app
from typer.testing import CliRunner

from mediqa_cli.io import Scan, discover
from tests.packaged import nibabel_data, packaged_dicom

runner = CliRunner()


def _scan(path: Path | str) -> Scan:
    scans = [s for s in discover([str(path)]) if isinstance(s, Scan)]
    assert len(scans) == 1, scans
    return scans[0]


def _slices(scan: Scan) -> np.ndarray:
    return np.stack([scan.read_slice(i) for i in range(scan.n_slices)])


def _degrade(src: str | Path, dst: Path, kind: str, severity: float, *extra: str):
    result = runner.invoke(app, ["degrade", str(src), str(dst), "--kind", kind,
                                 "--severity", str(severity), *extra])
    return result


def _same_geometry(a: Scan, b: Scan) -> None:
    assert a.shape == b.shape and a.channels == b.channels
    np.testing.assert_allclose(a.spacing, b.spacing, equal_nan=True)


def test_ct_dicom_round_trip_is_a_new_degraded_instance(tmp_path: Path):
    src = packaged_dicom("CT_small.dcm")
    out = tmp_path / "ct.dcm"
    result = _degrade(src, out, "ct_lowdose", 0.6)
    assert result.exit_code == 0, result.output
    assert "noise" in result.output and "i0" in result.output  # params and family severities
    before, after = _scan(src), _scan(out)
    _same_geometry(before, after)
    assert after.modality == "CT"
    diff = np.abs(_slices(before) - _slices(after))
    assert diff.mean() > 5.0  # HU: low-dose noise is visible
    original, copy = pydicom.dcmread(src), pydicom.dcmread(out)
    assert copy.SOPInstanceUID != original.SOPInstanceUID
    assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID
    assert copy.SeriesInstanceUID != original.SeriesInstanceUID
    assert copy.SeriesDescription.endswith("(degraded ct_lowdose s=0.6)")
    assert copy.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_severity_zero_reproduces_the_dicom_within_rescale_rounding(tmp_path: Path):
    src = packaged_dicom("CT_small.dcm")
    out = tmp_path / "ct0.dcm"
    assert _degrade(src, out, "ct_lowdose", 0.0).exit_code == 0
    slope = float(pydicom.dcmread(src).get("RescaleSlope", 1))
    before, after = _slices(_scan(src)), _slices(_scan(out))
    assert np.abs(before - after).max() <= slope / 2 + 1e-3
    assert pydicom.dcmread(out).SOPInstanceUID != pydicom.dcmread(src).SOPInstanceUID


def test_multi_file_series_is_written_as_one_new_series_folder(tmp_path: Path, series_dir: Path):
    out = tmp_path / "degraded"
    result = _degrade(series_dir, out, "mr_noise", 0.6)
    assert result.exit_code == 0, result.output
    before, after = _scan(series_dir), _scan(out)
    _same_geometry(before, after)
    assert sorted(os.listdir(out)) == sorted(os.listdir(series_dir))
    uids = {pydicom.dcmread(out / name).SeriesInstanceUID for name in os.listdir(out)}
    assert len(uids) == 1 and uids != {pydicom.dcmread(p).SeriesInstanceUID for p in before.paths}
    assert np.abs(_slices(before) - _slices(after)).mean() > 0


def test_nifti_round_trip_keeps_affine_and_geometry(tmp_path: Path):
    import nibabel as nib

    src = nibabel_data("anatomical.nii")
    noisy, clean = tmp_path / "noisy.nii", tmp_path / "clean.nii"
    assert _degrade(src, noisy, "mr_noise", 0.6).exit_code == 0
    assert _degrade(src, clean, "mr_noise", 0.0).exit_code == 0
    before = _scan(src)
    for path in (noisy, clean):
        _same_geometry(before, _scan(path))
        np.testing.assert_allclose(nib.load(path).affine, nib.load(src).affine)
        dtype = nib.load(path).get_data_dtype()  # header byte order is kept (big-endian here)
        assert dtype.kind == "f" and dtype.itemsize == 4
    reference = _slices(before)
    np.testing.assert_allclose(_slices(_scan(clean)), reference, atol=1e-3 * reference.max())
    assert np.abs(_slices(_scan(noisy)) - reference).mean() > 0.01 * reference.mean()


def test_png_round_trip_keeps_format_colour_and_size(tmp_path: Path):
    skimage = pytest.importorskip("skimage")
    src = tmp_path / "ihc.png"  # name keeps the reader's HISTO hint
    shutil.copy(os.path.join(os.path.dirname(skimage.__file__), "data", "ihc.png"), src)
    blurred, same = tmp_path / "blurred.png", tmp_path / "same.png"
    assert _degrade(src, blurred, "photo_defocus", 0.6).exit_code == 0
    assert _degrade(src, same, "photo_defocus", 0.0).exit_code == 0
    before = _scan(src)
    for path in (blurred, same):
        _same_geometry(before, _scan(path))
    reference = _slices(before)
    assert np.array_equal(_slices(_scan(same)), reference)  # lossless 8-bit: exact
    assert np.abs(_slices(_scan(blurred)) - reference).mean() > 1.0


def test_kind_for_another_modality_is_refused_unless_forced(tmp_path: Path):
    src = packaged_dicom("MR_small.dcm")
    refused = _degrade(src, tmp_path / "a.dcm", "ct_lowdose", 0.5)
    assert refused.exit_code == 1 and "--force" in refused.output
    assert not (tmp_path / "a.dcm").exists()


def test_unknown_kind_is_a_usage_error(tmp_path: Path):
    result = _degrade(packaged_dicom("CT_small.dcm"), tmp_path / "x.dcm", "no_such_kind", 0.5)
    assert result.exit_code == 2


def test_list_names_kinds_with_modalities_and_families():
    from mediqa_train.degrade import REGISTRY

    result = runner.invoke(app, ["degrade", "--list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name, sim in REGISTRY.items():
        line = next(line for line in result.output.splitlines() if f" {name} " in line)
        assert sim.families[0] in line and sim.modalities[0] in line
