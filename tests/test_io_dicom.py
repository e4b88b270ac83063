"""DICOM readers: series grouping, sorting, geometry checks, decoding, colour and codecs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest

from mediqa_cli.demo import write_dicom_series
from mediqa_cli.io import Scan, ScanProblem, discover
from tests.packaged import packaged_dicom


def _scans(path: Path) -> list[Scan | ScanProblem]:
    """Scans and problem rows under path, without ignored non-image files."""
    return [item for item in discover([str(path)]) if getattr(item, "status", "") != "ignored"]


def test_series_is_sorted_by_position_not_file_name(series_dir: Path, real_volume):
    (scan,) = _scans(series_dir)
    assert isinstance(scan, Scan)
    assert scan.shape == (10, 64, 64)
    assert scan.spacing == pytest.approx((2.0, 0.9, 0.8))
    for index in range(scan.n_slices):
        np.testing.assert_array_equal(scan.read_slice(index), real_volume[index].astype(np.float32))
    assert scan.modality == "MR" and scan.modality_source == "dicom-tag"
    assert scan.anatomy == "head"


def test_reversed_positions_are_sorted_along_the_normal(tmp_path: Path, real_volume):
    heights = [float(-2 * i) for i in range(len(real_volume))]
    write_dicom_series(real_volume, tmp_path / "s", positions=heights, seed=1)
    (scan,) = _scans(tmp_path / "s")
    # Lowest position first: the last written slice comes first.
    np.testing.assert_array_equal(scan.read_slice(0), real_volume[-1].astype(np.float32))


def test_two_series_in_one_folder_become_two_scans(tmp_path: Path, real_volume):
    write_dicom_series(real_volume[:5], tmp_path / "mixed", seed=1)
    write_dicom_series(real_volume[5:], tmp_path / "mixed", seed=2, modality="CT")
    scans = _scans(tmp_path / "mixed")
    assert sorted(s.n_slices for s in scans) == [5, 5]
    assert {s.modality for s in scans} == {"MR", "CT"}


def test_series_split_where_matrix_differs(tmp_path: Path, real_volume):
    uid = pydicom.uid.generate_uid()
    write_dicom_series(real_volume[:4], tmp_path / "m", seed=1, series_uid=uid)
    write_dicom_series(real_volume[4:8, :32, :32], tmp_path / "m", seed=2, series_uid=uid,
                       positions=[100.0, 102.0, 104.0, 106.0])
    shapes = sorted(s.shape for s in _scans(tmp_path / "m"))
    assert shapes == [(4, 32, 32), (4, 64, 64)]


def test_missing_slice_and_duplicate_positions_are_errors(tmp_path: Path, real_volume):
    gap = [0, 2, 4, 6, 14, 16, 18, 20, 22, 24]
    write_dicom_series(real_volume, tmp_path / "gap", positions=[float(h) for h in gap])
    dup = [0, 2, 4, 4, 6, 8, 10, 12, 14, 16]
    write_dicom_series(real_volume, tmp_path / "dup", positions=[float(h) for h in dup])
    (gap_row,) = _scans(tmp_path / "gap")
    (dup_row,) = _scans(tmp_path / "dup")
    assert gap_row.status == "error" and "missing slice" in gap_row.message
    assert dup_row.status == "error" and "duplicated slice position" in dup_row.message


def test_ct_rescale_gives_hounsfield_units(tmp_path: Path):
    path = packaged_dicom("CT_small.dcm")
    (scan,) = list(discover([path]))
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(scan.read_slice(0), expected)
    assert scan.read_slice(0).min() < -500  # air is in HU, not raw stored values


def test_monochrome1_is_inverted_so_bright_means_dense(tmp_path: Path):
    path = packaged_dicom("RG1_J2KI.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    (scan,) = list(discover([path]))
    image = scan.read_slice(0)
    raw = pydicom.dcmread(path).pixel_array.astype(np.float32)
    # Inversion flips the order of values: the darkest raw pixel is the brightest shown.
    assert image.flat[np.argmin(raw)] == image.max()


@pytest.mark.parametrize(
    "name, channels",
    [("US1_J2KR.dcm", 3), ("SC_ybr_full_422_uncompressed.dcm", 3), ("color-pl.dcm", 3),
     ("MR_small_jpeg_ls_lossless.dcm", 1), ("MR_small_RLE.dcm", 1), ("JPEG-LL.dcm", 1)],
)
def test_compressed_and_colour_dicom_decode(name: str, channels: int):
    (scan,) = list(discover([packaged_dicom(name)]))
    assert isinstance(scan, Scan), getattr(scan, "message", "")
    image = scan.read_slice(0)
    assert scan.channels == channels
    assert image.shape[:2] == scan.shape[1:]
    assert (image.ndim == 3) == (channels == 3)
    assert np.isfinite(image).all() and image.std() > 0


def test_multiframe_cine_is_one_scan_of_frames():
    (scan,) = list(discover([packaged_dicom("emri_small.dcm")]))
    assert scan.shape == (10, 64, 64)
    assert not np.array_equal(scan.read_slice(0), scan.read_slice(5))


def test_non_image_objects_are_skipped_with_reason():
    (row,) = list(discover([packaged_dicom("rtstruct.dcm")]))
    assert row.status == "skipped" and "RTSTRUCT" in row.message


def test_dicom_detected_by_content_without_extension(tmp_path: Path):
    target = tmp_path / "IMG0001"
    target.write_bytes(Path(packaged_dicom("CT_small.dcm")).read_bytes())
    (scan,) = list(discover([str(tmp_path)]))
    assert isinstance(scan, Scan) and scan.modality == "CT"


def test_scan_id_is_stable_and_carries_no_tag_values(series_dir: Path):
    first = _scans(series_dir)[0]
    second = _scans(series_dir)[0]
    assert first.scan_id == second.scan_id
    assert "DOE" not in first.scan_id and len(first.scan_id) == 16
    assert not math.isnan(first.spacing[0])


def test_siemens_mosaic_unpacks_into_a_volume():
    import importlib.util

    spec = importlib.util.find_spec("heudiconv")
    if spec is None:
        pytest.skip("heudiconv test data not installed (constraints/corpus-nodeps.txt)")
    data = Path(list(spec.submodule_search_locations)[0]) / "tests" / "data"
    (scan,) = [s for s in discover([str(data / "b0dwiForFmap")]) if isinstance(s, Scan)]
    assert scan.shape == (81, 152, 150)
    assert scan.spacing == pytest.approx((1.5, 1.5, 1.5), abs=1e-4)
    assert any("3 volumes" in note for note in scan.notes)
    middle = scan.read_slice(40)
    assert middle.shape == (152, 150) and middle.std() > 0


def test_monochrome1_inverts_around_the_stored_range_so_a_series_stays_consistent(tmp_path: Path):
    """Two MONOCHROME1 slices with different content ranges: one stored value gives one output
    value in both (a per-slice min + max inversion would shift them differently)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from mediqa_cli.io.dicom import decode_dicom_slice

    outputs = []
    for i, top in enumerate((1000, 3000)):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality = "DX"
        ds.Rows, ds.Columns = 16, 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        pixels = np.linspace(100, top, 256).reshape(16, 16).astype(np.uint16)
        ds.PixelData = pixels.tobytes()
        path = tmp_path / f"slice{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out = decode_dicom_slice(str(path))
        np.testing.assert_allclose(out, 4095.0 - pixels)
        outputs.append(out.flat[0])
    assert outputs[0] == outputs[1]  # stored value 100 in both slices


def test_a_uid_seed_writes_the_same_series_every_time_and_none_writes_a_new_one(
        tmp_path: Path, real_volume):
    """`mediqa demo` seeds its series' UIDs, so the demo report keeps its pseudonyms run to
    run; test series stay unique by default."""
    import pydicom

    def uids(folder: str, **kw) -> list[tuple[str, str, str]]:
        files = write_dicom_series(real_volume[:3], tmp_path / folder, seed=1, **kw)
        return sorted((d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID)
                      for d in map(pydicom.dcmread, files))

    seeded = uids("a", uid_seed="demo")
    assert uids("b", uid_seed="demo") == seeded
    assert len({sop for _, _, sop in seeded}) == 3
    assert uids("c", uid_seed="other")[0][1] != seeded[0][1]
    assert uids("d")[0][1] != uids("e")[0][1]
