"""Normalisation and native-resolution patchify: contracts, CT windows, aspect, budget, NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mediqa_cli.preprocess import (
    CT_WINDOWS,
    N_CHANNELS,
    PATCH,
    fit_to_budget,
    normalise,
    patchify,
    preprocess_slice,
)


def test_ct_windows_put_each_window_level_at_mid_grey() -> None:
    levels = np.array([[level for level, _ in CT_WINDOWS]], dtype=np.float32)  # (1, 3) HU
    out = normalise(levels, "CT")
    assert out.shape == (1, 3, N_CHANNELS) and out.dtype == np.float32
    for ch in range(3):
        assert out[0, ch, ch] == pytest.approx(0.5, abs=1e-6)


def test_ct_air_is_black_and_bone_saturates_soft_tissue_window() -> None:
    out = normalise(np.array([[-1000.0, 1000.0]], dtype=np.float32), "CT")
    assert out[0, 0, 0] == 0.0 and out[0, 0, 2] == 0.0  # air: below soft tissue and bone
    assert 0.0 < out[0, 0, 1] < 0.5  # ...but graded in the lung window
    assert out[0, 1, 0] == 1.0  # dense bone: above the soft-tissue window
    assert 0.0 < out[0, 1, 2] < 1.0  # ...but still graded in the bone window


def test_grey_modalities_use_robust_range_and_replicate_channels() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(300.0, 50.0, (64, 48)).astype(np.float32)
    img[0, 0] = 1e6  # one hot pixel must not set the contrast
    out = normalise(img, "MR")
    assert out.shape == (64, 48, N_CHANNELS)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    assert 0.3 < float(np.median(out[..., 0])) < 0.7


def test_volume_range_keeps_a_faint_slice_faint() -> None:
    faint = np.full((32, 32), 10.0, dtype=np.float32)
    faint[::2] = 12.0
    own = normalise(faint, "MR")
    shared = normalise(faint, "MR", value_range=(0.0, 1000.0))
    assert own.max() == 1.0  # per-slice scaling stretches the noise floor to full contrast
    assert shared.max() < 0.02


def test_colour_is_kept_as_colour() -> None:
    img = np.zeros((20, 20, 3), dtype=np.float32)
    img[..., 0] = 255.0
    out = normalise(img, "FUNDUS")
    assert out.shape == (20, 20, 3)
    assert np.all(out[..., 0] == 1.0) and np.all(out[..., 1:] == 0.0)


@pytest.mark.parametrize("modality", ["CT", "MR", "XR", None])
def test_nan_and_inf_become_finite_values_in_unit_range(modality: str | None) -> None:
    img = np.linspace(-500, 500, 400, dtype=np.float32).reshape(20, 20)
    img[0, :5] = [np.nan, np.inf, -np.inf, np.nan, np.nan]
    out = normalise(img, modality)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    tokens = preprocess_slice(img, modality)
    assert np.isfinite(tokens.patches).all()


def test_all_nan_slice_does_not_crash() -> None:
    out = normalise(np.full((8, 8), np.nan, dtype=np.float32), "MR")
    assert np.all(out == 0.0)


def test_patchify_contract_at_native_resolution() -> None:
    img = np.random.default_rng(1).random((48, 80, 3), dtype=np.float32)
    tok = patchify(img, (0.7, 0.9), max_patches=1024)
    assert tok.grid == (3, 5) and tok.n_tokens == 15
    assert tok.patches.shape == (15, N_CHANNELS * PATCH * PATCH) and tok.patches.dtype == np.float32
    assert tok.coords.shape == (15, 2) and tok.coords.dtype == np.int64
    assert tok.spacing_mm == (0.7, 0.9) and tok.scale == 1.0
    # Patch (row 1, col 2), channel-major, equals the pixels it covers.
    i = int(np.flatnonzero((tok.coords[:, 0] == 1) & (tok.coords[:, 1] == 2))[0])
    expected = img[16:32, 32:48].transpose(2, 0, 1).reshape(-1)
    np.testing.assert_array_equal(tok.patches[i], expected)
    centres = tok.norm_coords()
    assert centres.min() > 0.0 and centres.max() < 1.0


def test_long_images_keep_their_aspect_under_the_token_cap() -> None:
    img = np.random.default_rng(2).random((2000, 500, 3), dtype=np.float32)
    tok = patchify(img, (0.1, 0.1), max_patches=64)
    assert tok.n_tokens <= 64
    rows, cols = tok.grid
    assert rows / cols == pytest.approx(4.0, rel=0.3)
    assert tok.n_tokens >= 0.7 * 64  # the budget is used, not wasted
    # mm per pixel grows by the downscale factor
    assert tok.spacing_mm[0] == pytest.approx(0.1 / tok.scale, rel=0.02)


@pytest.mark.parametrize("shape", [(513, 511), (1, 5000), (4000, 3), (17, 17)])
def test_fit_to_budget_never_exceeds_the_cap(shape: tuple[int, int]) -> None:
    rows, cols = fit_to_budget(*shape, max_patches=100)
    assert math.ceil(rows / PATCH) * math.ceil(cols / PATCH) <= 100
    assert rows >= 1 and cols >= 1


def test_small_images_are_padded_up_to_one_patch() -> None:
    img = np.ones((5, 9, 3), dtype=np.float32)
    tok = patchify(img)
    assert tok.grid == (1, 1) and tok.n_tokens == 1
    patch = tok.patches[0].reshape(3, PATCH, PATCH)
    assert patch[:, :5, :9].min() == 1.0 and patch[:, 5:, :].max() == 0.0


def test_unknown_spacing_stays_unknown() -> None:
    tok = preprocess_slice(np.ones((40, 40), dtype=np.float32), "XR")
    assert all(math.isnan(s) for s in tok.spacing_mm)
