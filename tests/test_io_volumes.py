"""NIfTI/MGH volumes and raster images: geometry, lazy slices, 4D policy, colour."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mediqa_cli.io import Scan, discover
from tests.packaged import nibabel_data


def _only(path: str) -> Scan:
    (scan,) = list(discover([path]))
    assert isinstance(scan, Scan), getattr(scan, "message", "")
    return scan


def test_nifti_slices_match_the_axial_planes_of_the_data():
    path = nibabel_data("anatomical.nii")
    scan = _only(path)
    data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    axis = nib.aff2axcodes(nib.load(path).affine).index("S") if "S" in nib.aff2axcodes(
        nib.load(path).affine) else 2
    assert scan.n_slices == data.shape[axis]
    middle = scan.n_slices // 2
    plane = np.take(data, middle, axis=axis)
    # The reader shows the plane transposed and flipped; the values are the same.
    np.testing.assert_array_equal(np.sort(scan.read_slice(middle).ravel()), np.sort(plane.ravel()))
    assert scan.read_slice(middle).shape == scan.shape[1:]


def test_4d_nifti_scores_first_volume_with_a_note():
    scan = _only(nibabel_data("example4d.nii.gz"))
    assert scan.shape[0] == 24
    assert any("first volume of 2" in note for note in scan.notes)


def test_mgz_volume_reads_through_the_proxy():
    scan = _only(nibabel_data("test.mgz"))
    assert scan.kind == "nifti"
    assert scan.read_slice(0).shape == scan.shape[1:]


def test_nifti_spacing_comes_from_the_header(tmp_path: Path):
    data = np.random.default_rng(0).normal(size=(20, 30, 12)).astype(np.float32)
    affine = np.diag([0.5, 0.7, 3.0, 1.0])
    path = tmp_path / "brain_t1w.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    scan = _only(str(path))
    assert scan.shape == (12, 30, 20)
    assert scan.spacing == pytest.approx((3.0, 0.7, 0.5))
    assert (scan.modality, scan.modality_source) == ("MR", "file-name")
    assert scan.anatomy == "head"


def test_fundus_photo_stays_colour():
    import skimage

    path = str(Path(skimage.__file__).parent / "data" / "retina.jpg")
    scan = _only(path)
    image = scan.read_slice(0)
    assert image.shape == (1411, 1411, 3) and scan.channels == 3
    assert (scan.modality, scan.modality_source) == ("FUNDUS", "file-name")


def test_16bit_tiff_and_grey_png_read_as_float(tmp_path: Path):
    import tifffile
    from PIL import Image

    ramp = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    tifffile.imwrite(tmp_path / "xray.tif", ramp)
    Image.fromarray((ramp // 256).astype(np.uint8)).save(tmp_path / "grey.png")
    tif = _only(str(tmp_path / "xray.tif"))
    png = _only(str(tmp_path / "grey.png"))
    np.testing.assert_array_equal(tif.read_slice(0), ramp.astype(np.float32))
    assert png.read_slice(0).shape == (48, 64) and png.channels == 1
    assert tif.modality == "XR"


@pytest.mark.parametrize(
    ("name", "description", "expected"),
    [
        ("patient12_ct.nii.gz", "", ("CT", "file-name")),  # "patient12" holds "t1"
        ("scan.nii.gz", "CT abdomen", ("CT", "header")),
        ("sub-01_T1w.nii.gz", "", ("MR", "file-name")),
        ("anatomical.nii", "", ("MR", "file-name")),
        ("acquisition.nii", "", (None, "none")),  # "acquisition" holds "ct"
    ],
)
def test_nifti_modality_hints_match_whole_words(name: str, description: str, expected):
    from mediqa_cli.io.nifti import _modality_hint

    assert _modality_hint(f"/data/{name}", description) == expected
