"""Shared fixtures: real packaged images and series built from real volumes."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.packaged import packaged_dicom

warnings.filterwarnings("ignore", module="pydicom")


@pytest.fixture
def real_volume() -> np.ndarray:
    """A real MR head volume (enhanced MR, 10 x 64 x 64) as int16."""
    import pydicom

    ds = pydicom.dcmread(packaged_dicom("emri_small.dcm"))
    return ds.pixel_array.astype(np.int16)


@pytest.fixture
def series_dir(tmp_path: Path, real_volume: np.ndarray) -> Path:
    """A shuffled single-slice DICOM series written from the real volume."""
    from mediqa_cli.demo import write_dicom_series

    out = tmp_path / "series"
    write_dicom_series(
        real_volume, out, modality="MR", pixel_spacing=(0.9, 0.8), slice_spacing=2.0,
        body_part="HEAD", seed=3, patient_name="DOE^JANE", patient_id="PID12345",
    )
    return out


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small randomly initialised network saved as installed weights (version t0)."""
    import torch

    from mediqa_cli.model.config import ModelConfig
    from mediqa_cli.model.network import MedIQANet
    from mediqa_cli.model.weights import save_weights

    torch.manual_seed(0)
    model = MedIQANet(ModelConfig.tiny()).eval()
    out = save_weights(model, tmp_path / "weights", name="test-random", version="t0")
    monkeypatch.setenv("MEDIQA_WEIGHTS", str(out))
    return out


@pytest.fixture
def archive(tmp_path: Path, series_dir: Path) -> Path:
    """Five scans: a DICOM series, CT and ultrasound files, a NIfTI volume, a PNG."""
    from PIL import Image

    from tests.packaged import nibabel_data

    root = tmp_path / "archive"
    shutil.copytree(series_dir, root / "series")
    for name in ("CT_small.dcm", "US1_J2KR.dcm"):
        shutil.copy(packaged_dicom(name), root / name)
    shutil.copy(nibabel_data("anatomical.nii"), root / "anatomical.nii")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((80, 120)) * 255).astype("uint8")).save(root / "img0001.png")
    return root


@pytest.fixture(autouse=True)
def _mediqa_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """`mediqa score` creates its pseudonym site key on first use: keep it out of $HOME."""
    monkeypatch.setenv("MEDIQA_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "config"))
