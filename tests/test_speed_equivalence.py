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


def _old_label(mask: np.ndarray, max_iter: int = 64) -> np.ndarray:
    """The components before: alternating row/column run-minimum sweeps (numpy only)."""

    def run_min_rows(labels: np.ndarray, m2: np.ndarray) -> np.ndarray:
        m = m2.ravel()
        if not m.any():
            return labels
        prev = np.zeros_like(m2)
        prev[:, 1:] = m2[:, :-1]
        starts = (m2 & ~prev).ravel()[m]
        run_min = np.minimum.reduceat(labels.ravel()[m], np.flatnonzero(starts))
        out = labels.ravel().copy()
        out[m] = run_min[np.cumsum(starts) - 1]
        return out.reshape(labels.shape)

    h, w = mask.shape
    labels = np.where(mask, np.arange(h * w, dtype=np.int64).reshape(h, w), h * w)
    for _ in range(max_iter):
        new = run_min_rows(labels, mask)
        new = run_min_rows(new.T.copy(), mask.T.copy()).T
        if np.array_equal(new, labels):
            break
        labels = new
    return np.where(mask, labels, -1)


def _old_keep_large(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    labels = _old_label(mask)
    ids, counts = np.unique(labels[mask], return_counts=True)
    if ids.size <= 1:
        return mask
    return np.isin(labels, ids[counts >= min_fraction * counts.max()])


def _old_fill_holes(mask: np.ndarray) -> np.ndarray:
    labels = _old_label(~mask)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return mask | (~mask & ~np.isin(labels, border[border >= 0]))


def _blob_masks() -> list[np.ndarray]:
    """Masks like the foreground step sees: thresholded smooth noise at several scales and
    densities (many components, holes, border contact), and masks of packaged images."""
    from scipy import ndimage

    from mediqa_cli.iqm import _bright_foreground

    rng = np.random.default_rng(11)
    masks = []
    for shape in ((64, 64), (97, 131), (256, 200)):
        for sigma in (1.0, 3.0, 8.0):
            field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
            for q in (0.3, 0.5, 0.8):
                masks.append(field > np.quantile(field, q))
    import skimage.data

    for name in ("camera", "coins", "moon", "page"):
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
        image = image[image.shape[0] // 2] if image.ndim == 3 else image
        masks.append(_bright_foreground(image))
    return masks


def test_components_and_holes_match_the_run_sweep_labelling() -> None:
    from scipy import ndimage

    from mediqa_cli.iqm import _fill_holes, _keep_large_components

    for mask in _blob_masks():
        np.testing.assert_array_equal(_keep_large_components(mask, 0.1),
                                      _old_keep_large(mask, 0.1))
        np.testing.assert_array_equal(_fill_holes(mask), _old_fill_holes(mask))
        np.testing.assert_array_equal(_fill_holes(mask), ndimage.binary_fill_holes(mask))


def _mr_slices() -> list[np.ndarray]:
    """Slices of a packaged MR volume in the reader's units (small enough for the mask memo)."""
    data = np.asarray(nib.load(nibabel_data("example4d.nii.gz")).dataobj, dtype=np.float32)
    return [np.ascontiguousarray(data[:, :, k, 0].T) * 7.0 for k in range(data.shape[2])]


def test_mask_memo_returns_the_mask_computed_afresh() -> None:
    from mediqa_cli import iqm

    rng = np.random.default_rng(5)
    images = [*(_mr_slices()[:3]), rng.normal(size=(300, 280)).astype(np.float32),
              np.full((40, 40), 3.0, np.float32)]
    holed = images[0].copy()
    holed[5:9, 5:9] = np.nan
    images.append(holed)
    iqm._MASK_MEMO.clear()
    for image in images + images:  # the second round is served by the memo where it can be
        expected = iqm._compute_bright_foreground(image)
        got = iqm._bright_foreground(image)
        np.testing.assert_array_equal(got, expected)
        got[...] = ~got  # a caller writing to its mask must not change the next caller's
    assert 0 < len(iqm._MASK_MEMO) <= iqm._MASK_MEMO_SIZE


def test_iqms_and_physics_compute_a_small_slice_mask_once(monkeypatch) -> None:
    from mediqa_cli import iqm, physics

    slices = _mr_slices()[:8]
    picked = [slices[i] for i in engine._spread(list(range(len(slices))), engine.IQM_SLICES)]

    def both() -> tuple[dict[str, float], list[np.ndarray]]:
        iqm._MASK_MEMO.clear()
        return (iqm.compute_iqms(picked, "MR"), [physics.slice_physics(s, "MR") for s in slices])

    calls = []
    compute = iqm._compute_bright_foreground
    monkeypatch.setattr(iqm, "_compute_bright_foreground",
                        lambda lum: calls.append(lum.shape) or compute(lum))
    shared_iqms, shared_physics = both()
    assert len(calls) == len(slices)  # not len(slices) + len(picked)

    monkeypatch.setattr(iqm, "_bright_foreground", compute)  # the way it was: no memo
    monkeypatch.setattr(physics, "_bright_foreground", compute)
    alone_iqms, alone_physics = both()
    assert shared_iqms.keys() == alone_iqms.keys()
    for key, value in alone_iqms.items():
        assert shared_iqms[key] == value or (math.isnan(value) and math.isnan(shared_iqms[key]))
    for shared, alone in zip(shared_physics, alone_physics):
        np.testing.assert_array_equal(shared, alone)


def test_patch_laplacian_by_shifted_views_matches_the_grouped_conv() -> None:
    """The CPU stencil is the conv's arithmetic in another order: equal up to float rounding."""
    from mediqa_cli.model.layers import PatchPhysics

    torch.manual_seed(0)
    physics = PatchPhysics(channels=3, patch=16, width=32).eval()
    x = torch.rand(64, 3, 16, 16)
    x[:8] = (x[:8] > 0.5).float()  # hard edges as well as noise
    conv = F.conv2d(x, physics.laplacian, groups=3)
    torch.testing.assert_close(physics._lap(x), conv, rtol=0, atol=2e-6)
    coarse = F.avg_pool2d(x, 2)
    torch.testing.assert_close(physics._lap(coarse), F.conv2d(coarse, physics.laplacian,
                                                               groups=3), rtol=0, atol=2e-6)


def test_excess_kurtosis_is_scipys_to_the_last_bit():
    """physics.excess_kurtosis replaced scipy.stats.kurtosis (half a second of start-up)."""
    from scipy.stats import kurtosis

    from mediqa_cli.physics import excess_kurtosis

    rng = np.random.default_rng(3)
    for i in range(60):
        shape = tuple(int(n) for n in rng.integers(8, 260, 2))
        values = rng.standard_t(3 + i % 5, size=shape) * rng.random() + rng.normal()
        assert excess_kurtosis(values) == float(kurtosis(values, axis=None))
    assert math.isnan(excess_kurtosis(np.full((8, 8), 3.0)))


def test_scoring_start_up_does_not_import_scipy_stats():
    import subprocess
    import sys

    code = ("import sys, mediqa_cli.runner, mediqa_cli.scoring, mediqa_cli.physics; "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
