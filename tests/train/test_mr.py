"""MR simulators follow k-space physics."""

from __future__ import annotations

import math

import pytest
import torch
from mediqa_train.degrade import REGISTRY
from mediqa_train.degrade.fields import legendre_field
from mediqa_train.degrade.mr import (
    MRGhostingParams,
    MRMotionParams,
    MRNoiseParams,
    MRTruncationParams,
    MRUndersamplingParams,
)
from mediqa_train.quality import reference_quality
from scipy.ndimage import center_of_mass
from train_images import real_image


def test_rician_background_mean_is_sigma_sqrt_pi_over_2(rng):
    image = torch.zeros(128, 128)
    image[32:96, 32:96] = 100.0  # robust max (99th percentile) = 100
    params = MRNoiseParams(sigma_rel=0.05)
    out = REGISTRY["mr_noise"].apply(image, (1.0, 1.0), params, rng)
    background = out[image == 0]
    sigma = 0.05 * 100.0
    assert abs(float(background.mean()) - sigma * math.sqrt(math.pi / 2)) < 0.03 * sigma
    # Rayleigh: variance (2 - pi/2) sigma^2; the bright square stays near 100 with std ~ sigma
    assert abs(float(background.var()) - (2 - math.pi / 2) * sigma**2) < 0.08 * sigma**2
    assert abs(float(out[48:80, 48:80].std()) - sigma) < 0.1 * sigma


def _motion_error(image, spacing, centre, rng):
    params = MRMotionParams(segment_centre=centre, segment_width=0.1,
                            translation_mm=(4.0, 2.0), rotation_deg=2.0)
    out = REGISTRY["mr_motion"].apply(image, spacing, params, rng)
    return float((out - image).norm() / image.norm()), params


def test_motion_late_in_kspace_hurts_less_than_motion_at_the_centre(rng):
    image, spacing = real_image("MR")
    centre_error, centre_params = _motion_error(image, spacing, 0.0, rng)
    late_error, late_params = _motion_error(image, spacing, 0.42, rng)
    assert late_error < 0.5 * centre_error
    sim = REGISTRY["mr_motion"]
    assert sim.severities(late_params)["motion"] < sim.severities(centre_params)["motion"]


def test_motion_error_spreads_along_the_phase_encode_axis(rng):
    image = torch.zeros(96, 96)
    image[40:56, 40:56] = 1.0
    params = MRMotionParams(0.0, 0.3, (3.0, 3.0), 0.0)
    err = (REGISTRY["mr_motion"].apply(image, (1.0, 1.0), params, rng) - image).abs()
    outside_rows = err[:, 40:56].clone()
    outside_rows[36:60] = 0  # columns of the object, away from it along rows (phase encode)
    outside_cols = err[40:56, :].clone()
    outside_cols[:, 36:60] = 0
    assert outside_rows.sum() > 3 * outside_cols.sum()


def test_nyquist_ghost_sits_half_a_field_of_view_away_with_sin_half_phi_amplitude(rng):
    image = torch.zeros(64, 64)
    image[8:24, 24:40] = 1.0  # object in the upper half; its N/2 ghost lands in rows 40..56
    phi = 0.6
    out = REGISTRY["mr_ghosting"].apply(image, (1.0, 1.0), MRGhostingParams(2, phi), rng)
    assert abs(float(out[40:56, 24:40].mean()) - math.sin(phi / 2)) < 0.01
    assert abs(float(out[8:24, 24:40].mean()) - math.cos(phi / 2)) < 0.01


def test_gain_error_ghost_dims_the_object_to_first_order_and_a_phase_error_does_not(rng):
    image = torch.zeros(64, 64)
    image[8:24, 24:40] = 1.0  # its N/2 ghost lands in rows 40..56, off the object
    sim = REGISTRY["mr_ghosting"]
    gain = sim.apply(image, (1.0, 1.0), MRGhostingParams(2, 0.0, 0.6), rng)
    assert abs(float(gain[40:56, 24:40].mean()) - 0.2) < 0.01  # |g - 1| / 2
    assert abs(float(gain[8:24, 24:40].mean()) - 0.8) < 0.01  # 1 + (g - 1) / 2
    # The same ghost (|e^{i phi} - 1| = 0.4) from a phase error: the object keeps cos(phi/2).
    phi = 2 * math.asin(0.2)
    phase = sim.apply(image, (1.0, 1.0), MRGhostingParams(2, phi), rng)
    assert abs(float(phase[40:56, 24:40].mean()) - 0.2) < 0.01
    assert abs(float(phase[8:24, 24:40].mean()) - math.cos(phi / 2)) < 0.01
    # Over an overlap the change is the difference between the ghost's source and the tissue
    # under it, times (1 - g) / 2: two tissues half a field apart swap 0.4 x 0.5 of contrast.
    two = torch.zeros(64, 64)
    two[8:24, 16:48], two[40:56, 16:48] = 1.0, 0.5
    moved = sim.apply(two, (1.0, 1.0), MRGhostingParams(2, 0.0, 0.6), rng) - two
    assert abs(float(moved[8:24, 16:48].abs().mean()) - 0.1) < 0.01


def test_ghosting_draws_gain_and_phase_errors_at_the_declared_severity(rng):
    sim = REGISTRY["mr_ghosting"]
    drawn = [sim.sample(rng, severity=0.6) for _ in range(200)]
    for params in drawn:
        assert abs(sim.severities(params)["ghosting"] - 0.6) < 1e-6
    gain_dominated = sum(abs(p.phase_error_rad) < 0.1 for p in drawn)
    phase_dominated = sum(abs(p.amplitude - 1) < 0.1 for p in drawn)
    assert gain_dominated > 10 and phase_dominated > 10


def test_bias_field_is_positive_smooth_and_shades_without_changing_mean_level(rng):
    image, spacing = real_image("MR")
    sim = REGISTRY["mr_bias"]
    params = sim.sample(rng, severity=1.0)
    field = legendre_field(128, 128, params.coefficients, params.order)
    assert float(field.min()) > 0
    assert float(field.max() / field.min()) > 1.5
    log_field = torch.log(field)
    curvature = max(float(log_field.diff(n=2, dim=0).abs().max()),
                    float(log_field.diff(n=2, dim=1).abs().max()))
    log_range = float(log_field.max() - log_field.min())
    assert curvature < 0.01 * log_range  # smooth: no pixel-scale structure at all
    out = sim.apply(image, spacing, params, rng)
    ratio = out[image > 50] / image[image > 50]
    assert float(ratio.min()) > 0
    assert abs(float((out * image).sum() / (image * image).sum()) - 1.0) < 0.3


def test_equispaced_undersampling_folds_the_object(rng):
    image = torch.zeros(64, 64)
    image[4:20, 24:40] = 1.0
    sim = REGISTRY["mr_undersampling"]
    out = sim.apply(image, (1.0, 1.0), MRUndersamplingParams(2.0, 0.0, "equispaced"), rng)
    assert float(out[36:52, 24:40].mean()) > 0.3  # copy shifted by N/R = 32 rows


def test_truncation_rings_next_to_a_sharp_edge(rng):
    image = torch.zeros(64, 64)
    image[:, 32:] = 1.0
    out = REGISTRY["mr_truncation"].apply(image, (1.0, 1.0), MRTruncationParams(0.4), rng)
    assert float(out[32, 32:40].max()) > 1.05  # Gibbs overshoot (~9 %)


def test_noise_quality_falls_with_severity_on_the_real_shoulder(rng):
    image, spacing = real_image("MR")
    sim = REGISTRY["mr_noise"]
    scores = []
    for s in (0.0, 0.5, 1.0):
        out = sim.apply(image, spacing, sim.sample(torch.Generator().manual_seed(0), s), rng)
        scores.append(reference_quality(image, out, "MR"))
    assert scores[0] == 100.0 and scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize("name", ["mr_noise", "mr_motion", "mr_ghosting", "mr_spike",
                                  "mr_undersampling", "mr_partial_fourier", "mr_truncation",
                                  "mr_bias"])
def test_magnitude_simulators_keep_a_negative_floor(name):
    """A z-scored slice (negative background) is corrupted as the same slice raised to zero,
    then lowered back: abs() no longer flips its negative values at every severity."""
    image, spacing = real_image("MR")
    image = image - image.min()
    floor = 0.4 * float(image.max())
    sim = REGISTRY[name]
    params = sim.sample(torch.Generator().manual_seed(5), 0.8)
    raised = sim.apply(image, spacing, params, torch.Generator().manual_seed(9))
    lowered = sim.apply(image - floor, spacing, params, torch.Generator().manual_seed(9))
    assert float(lowered.min()) < 0
    torch.testing.assert_close(lowered, raised - floor, atol=1e-3 * floor, rtol=0)


@pytest.mark.parametrize("width", [0.3, 0.1])
def test_motion_leaves_the_object_where_most_of_k_space_saw_it(rng, width):
    """Moved while the k-space centre was acquired (width 0.3) or after it (width 0.1), the image
    keeps the clean object's position: the artefact is the ghosting and blur, and the SSIM
    target prices those, not a shifted copy of a clean object."""
    image = torch.zeros(96, 96)
    image[36:60, 30:54] = 1.0
    params = MRMotionParams(0.0 if width > 0.2 else 0.12, width, (5.0, 5.0), 0.0)
    out = REGISTRY["mr_motion"].apply(image, (1.0, 1.0), params, rng)
    before, after = center_of_mass(image.numpy()), center_of_mass(out.numpy())
    assert abs(after[0] - before[0]) < 1.0 and abs(after[1] - before[1]) < 1.0
    assert float((out - image).abs().mean()) > 0.005  # and the motion still did something


def test_a_translation_that_held_the_centre_is_the_old_result_shifted_back(rng):
    """With the k-space centre in the moved segment, the lines outside it move by -t instead
    of the segment's by +t: for a whole-pixel translation that is exactly the displaced result
    rolled back by t (a sign error would leave it 2 t away)."""
    from mediqa_train.degrade.fourier import centred_frequencies, fft2c, ifft2c

    image, _ = real_image("MR")
    image = image - image.min()
    h, w = image.shape[-2:]
    params = MRMotionParams(0.0, 0.3, (4.0, -3.0), 0.0)
    out = REGISTRY["mr_motion"].apply(image, (1.0, 1.0), params, rng)
    fy, fx = centred_frequencies(h, w, image.device)
    ramp = torch.exp(-2j * math.pi * (fy * 4.0 + fx * -3.0)).to(torch.complex64)
    ky = (torch.arange(h) - h // 2) / h
    segment = ((ky - 0.0).abs() <= 0.15)[:, None]
    kspace = fft2c(image.to(torch.complex64))
    displaced = ifft2c(torch.where(segment, kspace * ramp, kspace)).abs().float()
    torch.testing.assert_close(out, torch.roll(displaced, shifts=(-4, 3), dims=(-2, -1)),
                               atol=1e-3 * float(image.max()), rtol=0)
