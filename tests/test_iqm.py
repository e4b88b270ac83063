"""Classical IQMs on real packaged images (pydicom CT/MR, skimage fundus) with known changes."""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from scipy.ndimage import gaussian_filter

from mediqa_cli.iqm import IQM_KEYS, compute_iqms, foreground_mask, noise_sigma

skimage_data = pytest.importorskip("skimage.data")


def _dicom_slice(name: str) -> np.ndarray:
    ds = pydicom.dcmread(get_testdata_file(name))
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    return (ds.pixel_array.astype(np.float32) * slope + intercept).astype(np.float32)


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    return _dicom_slice("CT_small.dcm")  # HU


@pytest.fixture(scope="module")
def mr() -> np.ndarray:
    return _dicom_slice("MR_small.dcm")


@pytest.fixture(scope="module")
def retina() -> np.ndarray:
    return skimage_data.retina().astype(np.float32)  # 1411 x 1411 x 3, 0..255


def _luma(rgb: np.ndarray) -> np.ndarray:
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)


def _disk(size: int, radius: float, inside: float, outside: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    return np.where(np.hypot(yy - centre, xx - centre) < radius, inside, outside).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _no_inf(result: dict[str, float]) -> bool:
    return all(isinstance(v, float) and not math.isinf(v) for v in result.values())


def test_returns_exactly_the_contract_keys_as_finite_floats_on_real_ct(ct: np.ndarray) -> None:
    result = compute_iqms([ct], modality="CT")
    assert tuple(result) == IQM_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    assert 0.0 < result["iqm_efc"] < 1.0
    assert 0.0 < result["iqm_foreground_fraction"] < 1.0


@pytest.mark.parametrize("which", ["ct", "mr", "retina"])
def test_added_noise_lowers_snr_and_cnr_and_raises_noise_sigma(
    which: str, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(which)
    modality = "CT" if which == "ct" else None
    rng = np.random.default_rng(0)
    spread = float(np.percentile(image, 99) - np.percentile(image, 1))
    noisy = image + rng.normal(0.0, 0.03 * spread, image.shape).astype(np.float32)
    clean, worse = compute_iqms([image], modality), compute_iqms([noisy], modality)
    assert worse["iqm_snr"] < 0.7 * clean["iqm_snr"]
    assert worse["iqm_cnr"] < 0.7 * clean["iqm_cnr"]
    assert worse["iqm_noise_sigma"] > 1.5 * clean["iqm_noise_sigma"]


@pytest.mark.parametrize("which", ["ct", "mr", "retina"])
def test_gaussian_blur_lowers_sharpness(which: str, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue(which)
    sigma = (1.5, 1.5, 0) if image.ndim == 3 else 1.5
    blurred = gaussian_filter(image, sigma=sigma)
    modality = "CT" if which == "ct" else None
    sharp = compute_iqms([image], modality)["iqm_sharpness"]
    soft = compute_iqms([blurred], modality)["iqm_sharpness"]
    assert soft < 0.5 * sharp


def test_ghost_raises_efc_on_real_mr(mr: np.ndarray) -> None:
    # An N/2 ghost along the phase-encoding axis, the classic EPI/motion artefact.
    ghosted = mr + 0.3 * np.roll(mr, mr.shape[0] // 2, axis=0)
    assert compute_iqms([ghosted])["iqm_efc"] > compute_iqms([mr])["iqm_efc"] + 0.02


def test_background_noise_raises_efc_on_real_fundus(retina: np.ndarray) -> None:
    # Magnitude noise lifts the black surround: energy leaves the object, entropy rises.
    grey = _luma(retina)
    rng = np.random.default_rng(1)
    noisy = np.abs(grey + rng.normal(0.0, 0.03 * float(grey.max()), grey.shape)).astype(np.float32)
    assert compute_iqms([noisy])["iqm_efc"] > compute_iqms([grey])["iqm_efc"] + 0.01


@pytest.mark.parametrize("sigma", [0.5, 3.0, 20.0])
def test_noise_sigma_recovers_known_gaussian_sigma(sigma: float) -> None:
    rng = np.random.default_rng(2)
    ramp = np.linspace(0.0, 500.0, 256, dtype=np.float32)[None, :]  # linear: invisible to N
    pure = rng.normal(100.0, sigma, (256, 256)).astype(np.float32)
    assert noise_sigma(pure) == pytest.approx(sigma, rel=0.1)
    assert noise_sigma(pure + ramp) == pytest.approx(sigma, rel=0.1)


def test_noise_sigma_is_measured_only_inside_the_mask() -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(100.0, 2.0, (128, 128)).astype(np.float32)
    image[:, 64:] += rng.normal(0.0, 20.0, (128, 64)).astype(np.float32)
    quiet = np.zeros(image.shape, dtype=bool)
    quiet[:, :60] = True
    assert noise_sigma(image, quiet) == pytest.approx(2.0, rel=0.1)


def test_mask_recovers_a_disk_on_a_dark_noisy_background() -> None:
    rng = np.random.default_rng(4)
    truth = _disk(256, 70, 1.0, 0.0) > 0
    image = np.where(truth, 800.0, 40.0) + rng.normal(0.0, 25.0, truth.shape)
    assert _iou(foreground_mask(image.astype(np.float32)), truth) > 0.9


def test_histology_mask_takes_the_dark_stain_on_bright_glass() -> None:
    rng = np.random.default_rng(5)
    truth = _disk(200, 60, 1.0, 0.0) > 0
    image = np.where(truth, 90.0, 240.0) + rng.normal(0.0, 6.0, truth.shape)
    assert _iou(foreground_mask(image.astype(np.float32), modality="HISTO"), truth) > 0.9
    assert _iou(foreground_mask(image.astype(np.float32)), truth) < 0.5  # glass taken instead


def test_mask_fills_holes_inside_the_object() -> None:
    ring = (_disk(128, 50, 1.0, 0.0) > 0) & ~(_disk(128, 20, 1.0, 0.0) > 0)
    image = np.where(ring, 500.0, 10.0).astype(np.float32)
    assert _iou(foreground_mask(image), _disk(128, 50, 1.0, 0.0) > 0) > 0.95


def test_ct_padding_below_air_stays_background(ct: np.ndarray) -> None:
    # Out-of-field padding (-3024 HU) must not make Otsu split padding from air.
    padded = np.full((ct.shape[0] + 96, ct.shape[1] + 96), -3024.0, dtype=np.float32)
    padded[48:-48, 48:-48] = ct
    mask = foreground_mask(padded, modality="CT")
    assert _iou(mask[48:-48, 48:-48], foreground_mask(ct, modality="CT")) > 0.95
    assert not mask[:48].any() and not mask[-48:].any()


def test_no_dark_background_means_all_foreground_and_nan_fber(retina: np.ndarray) -> None:
    fundus_only = retina[500:900, 500:900]  # inside the disc: no black surround
    result = compute_iqms([fundus_only])
    assert result["iqm_foreground_fraction"] == 1.0
    assert math.isnan(result["iqm_fber"])
    assert math.isfinite(result["iqm_cnr"]) and result["iqm_cnr"] > 0


def test_fber_is_high_with_dark_background_and_falls_with_background_noise() -> None:
    rng = np.random.default_rng(6)
    clean = _disk(128, 40, 1000.0, 10.0) + rng.normal(0.0, 2.0, (128, 128)).astype(np.float32)
    bright_bg = clean + np.where(_disk(128, 40, 0.0, 1.0) > 0, 150.0, 0.0).astype(np.float32)
    assert compute_iqms([clean])["iqm_fber"] > 1000
    assert compute_iqms([bright_bg])["iqm_fber"] < 0.1 * compute_iqms([clean])["iqm_fber"]


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((32, 32), np.float32),
        np.full((32, 32), 7.0, np.float32),
        np.ones((1, 1), np.float32),
        np.ones((2, 3), np.float32),
        np.full((16, 16), np.nan, np.float32),
        np.full((16, 16), np.inf, np.float32),
        np.zeros((0, 5), np.float32),
    ],
    ids=["zeros", "constant", "1x1", "2x3", "all-nan", "all-inf", "empty"],
)
def test_degenerate_slices_give_nan_or_finite_values_without_raising(image: np.ndarray) -> None:
    result = compute_iqms([image])
    assert tuple(result) == IQM_KEYS
    assert _no_inf(result)
    assert math.isnan(result["iqm_snr"])  # no measurable noise or signal: SNR is undefined


def test_nonfinite_voxels_are_ignored(ct: np.ndarray) -> None:
    damaged = ct.copy()
    damaged[10:20, 10:20] = np.nan
    damaged[60, 60:70] = np.inf
    damaged[70, 60:70] = -np.inf
    clean, result = compute_iqms([ct], "CT"), compute_iqms([damaged], "CT")
    assert all(math.isfinite(v) for v in result.values())
    for key in ("iqm_snr", "iqm_efc", "iqm_noise_sigma", "iqm_sharpness"):
        assert result[key] == pytest.approx(clean[key], rel=0.1), key
    assert not foreground_mask(damaged, "CT")[10:20, 10:20].any()


def test_colour_slice_is_scored_on_its_luminance(retina: np.ndarray) -> None:
    colour = compute_iqms([retina])
    grey = compute_iqms([_luma(retina)])
    assert all(math.isfinite(v) for v in colour.values())
    for key in IQM_KEYS:
        assert colour[key] == pytest.approx(grey[key], rel=1e-4), key


def test_scan_value_is_the_median_over_slices(mr: np.ndarray) -> None:
    alone = compute_iqms([mr])
    with_odd_slice = compute_iqms([mr, mr, np.zeros_like(mr)])
    assert with_odd_slice == pytest.approx(alone)


def test_no_slices_gives_all_nan() -> None:
    result = compute_iqms([])
    assert tuple(result) == IQM_KEYS and all(math.isnan(v) for v in result.values())


def test_downsampled_large_slice_keeps_the_native_noise_level() -> None:
    # Same object and noise at 512 and 2048 px: block averaging must not hide the noise.
    rng = np.random.default_rng(7)
    small = _disk(512, 180, 900.0, 20.0) + rng.normal(0.0, 15.0, (512, 512))
    large = _disk(2048, 720, 900.0, 20.0) + rng.normal(0.0, 15.0, (2048, 2048))
    a = compute_iqms([small.astype(np.float32)])
    b = compute_iqms([large.astype(np.float32)])
    assert b["iqm_noise_sigma"] == pytest.approx(a["iqm_noise_sigma"], rel=0.1)
    assert b["iqm_snr"] == pytest.approx(a["iqm_snr"], rel=0.1)
    assert b["iqm_foreground_fraction"] == pytest.approx(a["iqm_foreground_fraction"], rel=0.05)


def test_modality_accepts_dicom_codes(mr: np.ndarray) -> None:
    hu = mr - 1024.0  # an MR-shaped slice on a HU-like scale
    assert compute_iqms([hu], "ct") == pytest.approx(compute_iqms([hu], "CT"), nan_ok=True)
    stain = 255.0 - np.clip(mr / mr.max() * 255.0, 0, 255)
    assert compute_iqms([stain], "SM") == pytest.approx(compute_iqms([stain], "HISTO"), nan_ok=True)


def test_unlabelled_slice_in_hounsfield_units_is_treated_as_ct(ct: np.ndarray) -> None:
    assert compute_iqms([ct]) == pytest.approx(compute_iqms([ct], "CT"))


def test_a_flat_float32_slice_a_few_ulps_wide_does_not_crash_the_mask() -> None:
    """Why: numpy builds histogram edges in the sample's dtype; a float32 crop spanning a few
    ulps of a large value (a burnt-out or padded region) made Otsu raise "Too many bins"."""
    step = np.nextafter(np.float32(1000.0), np.float32(2000.0)) - np.float32(1000.0)
    rng = np.random.default_rng(0)
    flat = (np.float32(1000.0) + step * rng.integers(0, 4, size=(64, 64))).astype(np.float32)
    result = compute_iqms([flat], modality="XR")
    assert tuple(result) == IQM_KEYS
    assert foreground_mask(flat).shape == flat.shape
