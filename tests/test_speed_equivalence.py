"""The speed work changes how pixels are read and cut, never what comes out: each refactored
step is pinned here against the way it was computed before (issue 26)."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mediqa_cli import engine
from mediqa_cli.io import Scan, discover
from mediqa_cli.io import nifti as nifti_io
from mediqa_cli.options import ScoreOptions
from mediqa_cli.preprocess import fit_to_budget, normalise, patchify, preprocess_slice
from mediqa_cli.saliency import select_patches
from tests.packaged import nibabel_data


def _per_slice_read(path: str, slice_axis: int, ndim: int, index: int) -> np.ndarray:
    """The reader before: nibabel.load and the array proxy for every slice."""
    proxy = nib.load(path, mmap=False).dataobj
    slicer: list[object] = [slice(None)] * 3
    slicer[slice_axis] = index
    slicer.extend([0] * (ndim - 3))
    data = np.asarray(proxy[tuple(slicer)], dtype=np.float32)
    return np.ascontiguousarray(np.flipud(data.T))


def _volume(tmp_path: Path, name: str, affine: np.ndarray, scaled: bool) -> str:
    data = np.random.default_rng(1).integers(-300, 3000, (20, 17, 13, 2)).astype(np.int16)
    image = nib.Nifti1Image(data, affine)
    if scaled:
        image.header.set_slope_inter(0.37, -12.5)
    path = tmp_path / name
    nib.save(image, path)
    return str(path)


_SAGITTAL = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("affine", [np.eye(4), _SAGITTAL], ids=["axial", "sagittal"])
@pytest.mark.parametrize("scaled", [False, True])
def test_volume_once_reads_the_slices_per_slice_reading_gave(
    tmp_path: Path, suffix: str, affine: np.ndarray, scaled: bool, monkeypatch
) -> None:
    path = _volume(tmp_path, f"t1w{suffix}", affine, scaled)
    (scan,) = list(discover([path]))
    assert isinstance(scan, Scan)
    reader = scan.read_slice
    # Both routes of the reader: the whole volume decoded once, and the proxy opened once.
    for cache_bytes in (1 << 30, 0):
        monkeypatch.setattr(nifti_io, "RAW_CACHE_BYTES", cache_bytes)
        monkeypatch.setattr(nifti_io, "GZ_CACHE_BYTES", cache_bytes)
        nifti_io._open_volume.clear()
        for index in [*range(scan.n_slices), 0, scan.n_slices - 1]:
            before = _per_slice_read(path, reader.slice_axis, reader.ndim, index)
            after = reader(index)
            assert after.dtype == before.dtype and after.shape == before.shape
            np.testing.assert_array_equal(after, before)


def test_volume_is_opened_once_per_scan(monkeypatch) -> None:
    path = nibabel_data("anatomical.nii")
    (scan,) = list(discover([path]))
    nifti_io._open_volume.clear()
    loads = []
    real_load = nib.load
    monkeypatch.setattr(nifti_io.nib, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    for index in range(scan.n_slices):
        scan.read_slice(index)
    assert len(loads) == 1


def _old_patchify(image: np.ndarray, max_patches: int) -> np.ndarray:
    """Patches as cut before: torch pad and permute of the (rows, cols, C) image."""
    rows, cols, chans = image.shape
    new_r, new_c = fit_to_budget(rows, cols, max_patches)
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if (new_r, new_c) != (rows, cols):
        t = F.interpolate(t[None], size=(new_r, new_c), mode="bilinear", antialias=True,
                          align_corners=False)[0]
    grid_r, grid_c = math.ceil(new_r / 16), math.ceil(new_c / 16)
    t = F.pad(t, (0, grid_c * 16 - new_c, 0, grid_r * 16 - new_r))
    tiles = t.reshape(chans, grid_r, 16, grid_c, 16).permute(1, 3, 0, 2, 4)
    return tiles.reshape(grid_r * grid_c, chans * 256).contiguous().numpy()


@pytest.mark.parametrize("modality", ["MR", "CT", None, "FUNDUS"])
@pytest.mark.parametrize("shape", [(37, 50), (64, 64), (300, 190)])
@pytest.mark.parametrize("max_patches", [16384, 40])
def test_tokens_equal_patchify_of_the_replicated_slice(
    modality: str | None, shape: tuple[int, int], max_patches: int
) -> None:
    rng = np.random.default_rng(5)
    image = rng.normal(200, 300, shape).astype(np.float32)
    if modality == "FUNDUS":
        image = rng.uniform(0, 255, (*shape, 3)).astype(np.float32)
    image[3, 4] = np.nan
    tokens = preprocess_slice(image, modality, (0.8, 0.9), max_patches, value_range=None)
    before = _old_patchify(normalise(image, modality), max_patches)
    np.testing.assert_array_equal(tokens.patches, before)
    assert tokens.patches.dtype == np.float32
    np.testing.assert_array_equal(patchify(normalise(image, modality), max_patches=max_patches)
                                  .patches, before)


def test_patch_selection_of_a_slice_ignores_slices_within_the_budget() -> None:
    rng = np.random.default_rng(2)
    big = patchify(rng.random((320, 256, 3), dtype=np.float32))
    small = patchify(rng.random((96, 80, 3), dtype=np.float32))
    alone = select_patches([big], keep=64, seeds=[3])[0]
    mixed = select_patches([small, big, small], keep=64, seeds=[1, 3, 2])
    np.testing.assert_array_equal(mixed[1].indices, alone.indices)
    np.testing.assert_array_equal(mixed[1].scores, alone.scores)
    assert mixed[0].indices.tolist() == list(range(small.n_tokens))


def test_first_pass_keeping_slices_gives_what_reading_them_again_gave(
    series_dir: Path, monkeypatch
) -> None:
    options = ScoreOptions(max_slices=4)
    (scan,) = [s for s in discover([str(series_dir)]) if isinstance(s, Scan)]
    assert scan.n_slices > options.max_slices
    kept = engine.prepare_scan(scan, options, None)
    monkeypatch.setattr(engine, "KEEP_BYTES", 0)
    reread = engine.prepare_scan(scan, options, None)
    assert kept.slice_indices == reread.slice_indices
    assert kept.result.iqms == reread.result.iqms or all(
        (a == b) or (math.isnan(a) and math.isnan(b))
        for a, b in zip(kept.result.iqms.values(), reread.result.iqms.values()))
    assert kept.result.detail == reread.result.detail
