"""Paths of real images that ship inside installed packages (no download)."""

from __future__ import annotations

import os

import pytest


def packaged_dicom(name: str) -> str:
    """Path of a pydicom (or pydicom-data) test file; skips when it is not installed."""
    import pydicom.data

    try:
        path = pydicom.data.get_testdata_file(name)
    except Exception:  # noqa: BLE001
        path = None
    if not path:
        pytest.skip(f"{name} not available offline")
    return str(path)


def nibabel_data(name: str) -> str:
    import nibabel

    return os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", name)
