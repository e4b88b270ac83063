"""X-ray, ultrasound, nuclear and photographic simulators follow their physics."""

from __future__ import annotations

import math

import torch
from mediqa_train.degrade import REGISTRY
from mediqa_train.degrade.nuclear import NMCountsParams
from mediqa_train.degrade.photographic import DefocusParams
from mediqa_train.degrade.ultrasound import USSpeckleParams, to_display, to_envelope
from mediqa_train.degrade.xray import XRExposureParams, XRQuantumNoiseParams


def test_quantum_noise_variance_follows_signal_over_dose(rng):
    image = torch.full((128, 128), 400.0)
    image[:, 64:] = 100.0  # 99th percentile = 400
    out = REGISTRY["xr_quantum_noise"].apply(image, (1, 1), XRQuantumNoiseParams(200.0), rng)
    # quanta = 200 x signal / 400; variance in image units = signal x 400 / 200
    assert abs(float(out[:, :64].var()) / (400 * 2.0) - 1) < 0.1
    assert abs(float(out[:, 64:].var()) / (100 * 2.0) - 1) < 0.1
    assert abs(float(out.mean()) - float(image.mean())) < 2.0


def test_overexposure_saturates_the_most_exposed_parts_and_keeps_the_rest(rng):
    sim = REGISTRY["xr_exposure"]
    image = torch.linspace(0.0, 1000.0, 4096).reshape(64, 64)  # presentation: bright = low dose
    params = XRExposureParams(2.0, 1.0, 12)
    out = sim.apply(image, (1, 1), params, rng)
    lo, per_stop = sim.grey_scale(image)
    assert abs(lo - 10.0) < 0.1 and abs(per_stop - 980.0 / 5) < 0.1  # 1..99% over 5 stops
    burnt = image <= lo + 2.0 * per_stop  # dose x 2^2 reaches the saturation (dose 1 at lo)
    assert abs(sim.saturated_grey(image, params) - (lo + 2.0 * per_stop)) < 1e-3
    assert 0.3 < float(burnt.float().mean()) < 0.5
    assert torch.allclose(out[burnt], torch.tensor(sim.saturated_grey(image, params)), atol=1e-3)
    kept = image > lo + 2.1 * per_stop
    assert float((out[kept] - image[kept]).abs().max()) < 1.0  # only ADC rounding, no noise


def test_underexposure_noise_variance_follows_dose_and_brightness_stays(rng):
    sim = REGISTRY["xr_exposure"]
    image = torch.full((192, 128), 100.0)
    image[64:128] = 350.0  # 2.5 stops less dose than the top band (1..99% = 100..600, 5 stops)
    image[128:] = 600.0  # 5 stops less
    out = sim.apply(image, (1, 1), XRExposureParams(-2.0, 1.0, 12), rng)
    assert sim.grey_scale(image) == (100.0, 100.0)
    # A quarter of the dose adds a relative variance 3 / (1000 x dose): grey std ~ that / ln 2.
    top, middle, bottom = out[:64], out[64:128], out[128:]
    expected_top = 100.0 * math.sqrt(3 / 1000) / math.log(2)
    assert abs(float(top.std()) / expected_top - 1) < 0.1
    # Variance in proportion to dose: grey std x 2^1.25 for 2.5 stops less (x 2^2.5 if the
    # dose-domain noise were constant, x 1 if it grew with the dose squared).
    assert abs(float(middle.std()) / float(top.std()) / 2**1.25 - 1) < 0.15
    assert float(bottom.std()) > float(middle.std())
    assert abs(float(top.mean()) - 100.0) < 10.0  # automatic rescaling: no global darkening
    assert float(out.max()) <= 600.0  # no quanta renders as the clean white, not brighter
    assert torch.equal(sim.apply(image, (1, 1), XRExposureParams(0.0, 1.0, 12), rng), image)


def test_exposure_survives_outliers_far_outside_the_grey_range(rng):
    image = torch.linspace(0.0, 1000.0, 4096).reshape(64, 64)
    image[0, 0] = -1e6  # a dead-pixel value, ~25,000 stops of "dose" beyond the range
    out = REGISTRY["xr_exposure"].apply(image, (1, 1), XRExposureParams(-1.0, 1.0, 12), rng)
    assert torch.isfinite(out).all()


def test_fully_developed_speckle_has_rayleigh_snr(rng):
    peak = 255.0
    flat = to_display(torch.full((256, 256), 0.1), peak)  # uniform echo, no speckle yet
    flat[0, 0] = peak  # the display maximum the simulator decompresses from
    out = REGISTRY["us_speckle"].apply(flat, (1, 1), USSpeckleParams(1.0, (1.0, 1.0)), rng)
    envelope = to_envelope(out, peak)[8:, 8:]
    snr = float(envelope.mean() / envelope.std())
    assert abs(snr - math.sqrt(math.pi / (4 - math.pi))) < 0.1  # 1.91 (Wagner et al. 1983)


def test_counts_noise_relative_std_is_one_over_sqrt_counts(rng):
    image = torch.full((128, 128), 7.0)
    out = REGISTRY["nm_counts"].apply(image, (1, 1), NMCountsParams(25.0), rng)
    assert abs(float(out.std() / out.mean()) - 1 / 5) < 0.01


def test_defocus_removes_the_frequencies_at_the_first_zero_of_the_disk_mtf(rng):
    image = torch.zeros(128, 128)
    image[64, 64] = 255.0
    r = 4.0
    out = REGISTRY["photo_defocus"].apply(image, (1, 1), DefocusParams(r), rng)
    mtf = torch.fft.fft2(out).abs() / 255.0
    first_zero = 3.8317 / (2 * math.pi * r)  # J1 zero at 3.8317
    assert float(mtf[0, round(first_zero * 128)]) < 0.05
    assert float(mtf[0, 2]) > 0.9
