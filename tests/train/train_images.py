"""Real images from installed packages, small enough for a 2-core CPU, in physical units.

Named train_images (not conftest) so test modules can import it without clashing with other
suites' conftest modules."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest
import torch
import torch.nn.functional as F
from pydicom.data import get_testdata_file


def _shrink(image: np.ndarray, factor: int) -> torch.Tensor:
    """Area-average by an integer factor (keeps physical units; image (H, W) or (H, W, 3))."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    chw = t.permute(2, 0, 1) if t.dim() == 3 else t[None]
    out = F.avg_pool2d(chw[None], factor)[0] if factor > 1 else chw
    return out[0].contiguous() if t.dim() == 2 else out.contiguous()


def _dicom(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not installed (pydicom-data)")
    return pydicom.dcmread(path)


@functools.cache
def real_image(modality: str) -> tuple[torch.Tensor, tuple[float, float]]:
    """One real image per modality as (float32 image, (row_mm, col_mm))."""
    if modality == "CT":
        ds = _dicom("693_UNCR.dcm")  # head 512^2 -> 128^2, air around it
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        hu = np.maximum(hu, -1024.0)  # -3024 pads outside the scan field of view: call it air
        return _shrink(hu, 4), tuple(4 * float(v) for v in ds.PixelSpacing)
    if modality == "MR":
        ds = _dicom("MR2_UNCR.dcm")  # shoulder 1024^2 -> 128^2
        return _shrink(ds.pixel_array, 8), tuple(8 * float(v) for v in ds.PixelSpacing)
    if modality == "XR":
        ds = _dicom("RG1_UNCR.dcm")  # chest CR, MONOCHROME1: invert so more signal = brighter
        raw = ds.pixel_array.astype(np.float32)
        return _shrink(raw.max() - raw, 16), (16 * 0.168, 16 * 0.168)
    if modality == "US":
        ds = _dicom("US1_UNCR.dcm")  # RGB 480x640 -> (3, 120, 160)
        return _shrink(ds.pixel_array, 4), (0.4, 0.4)
    if modality == "NM":
        ds = _dicom("JPEG2000_UNC.dcm")  # whole body 1024x256 -> 128x128 around the trunk
        img = _shrink(ds.pixel_array, 2)
        return img[96:224].clamp_min(0).contiguous(), (4.8, 4.8)  # counts are >= 0
    if modality == "FUNDUS":
        from skimage import data
        return _shrink(data.retina(), 11), (0.1, 0.1)  # (3, 128, 128)
    if modality in ("HISTO", "OTHER"):
        from skimage import data
        return _shrink(data.immunohistochemistry(), 4), (0.002, 0.002)
    raise KeyError(modality)


def mr_small() -> tuple[torch.Tensor, tuple[float, float]]:
    ds = _dicom("MR_small.dcm")
    return torch.tensor(ds.pixel_array.astype(np.float32)), tuple(float(v) for v in ds.PixelSpacing)


def ct_small() -> tuple[torch.Tensor, tuple[float, float]]:
    ds = _dicom("CT_small.dcm")  # 128^2 cropped to the body (no air around)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return torch.tensor(hu.astype(np.float32)), tuple(float(v) for v in ds.PixelSpacing)


@dataclass(frozen=True)
class CorpusLikeItem:
    """The fields training reads from a corpus item, for pools built from test images."""

    image: torch.Tensor
    spacing: tuple[float, float]
    modality: str
    anatomy: str
    source: str
