"""X-ray, ultrasound, nuclear and photographic simulators follow their physics."""

from __future__ import annotations

import math

import torch
from mediqa_train.degrade import REGISTRY
from mediqa_train.degrade.nuclear import NMCountsParams
from mediqa_train.degrade.photographic import DefocusParams
from mediqa_train.degrade.ultrasound import USSpeckleParams, to_display, to_envelope
from mediqa_train.degrade.xray import XRExposureParams, XRQuantumNoiseParams
from train_images import real_image


def test_quantum_noise_variance_follows_signal_over_dose(rng):
    image = torch.full((128, 128), 400.0)
    image[:, 64:] = 100.0  # 99th percentile = 400
    out = REGISTRY["xr_quantum_noise"].apply(image, (1, 1), XRQuantumNoiseParams(200.0), rng)
    # quanta = 200 x signal / 400; variance in image units = signal x 400 / 200
    assert abs(float(out[:, :64].var()) / (400 * 2.0) - 1) < 0.1
    assert abs(float(out[:, 64:].var()) / (100 * 2.0) - 1) < 0.1
    assert abs(float(out.mean()) - float(image.mean())) < 2.0


def test_overexposure_clips_at_detector_saturation(rng):
    image, spacing = real_image("XR")
    out = REGISTRY["xr_exposure"].apply(image, spacing, XRExposureParams(2.0, 1.2, 12), rng)
    ceiling = float(out.max())
    assert float((out >= ceiling).float().mean()) > 0.2  # burnt-out area
    assert ceiling <= 1.2 * float(torch.quantile(image.flatten(), 0.99)) + 1e-3


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
