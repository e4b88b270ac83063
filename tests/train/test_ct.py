"""CT simulators follow projection-domain physics."""

from __future__ import annotations

import torch
from mediqa_train.degrade import REGISTRY
from mediqa_train.degrade.ct import (
    CTLowDoseParams,
    CTReconBlurParams,
    CTRingParams,
    CTSparseViewParams,
)
from mediqa_train.degrade.radon import (
    angles,
    detector_size,
    fbp,
    point_fbp,
    radial_fbp,
    radon,
)
from train_images import ct_small, real_image


def test_fbp_inverts_the_radon_transform_on_a_real_slice():
    image, _ = ct_small()
    mu = (image + 1000).clamp_min(0) / 1000
    theta = angles(256)
    recon = fbp(radon(mu, theta), theta, *mu.shape)
    assert float((recon - mu).abs().mean() / mu.mean()) < 0.03


def _noise_variance(image, spacing, i0, seed):
    params = CTLowDoseParams(i0, 0)
    out = REGISTRY["ct_lowdose"].apply(image, spacing, params, torch.Generator().manual_seed(seed))
    return float((out - image)[40:88, 40:88].var())


def test_lowdose_noise_variance_scales_as_one_over_i0():
    image, spacing = real_image("CT")
    var_high = _noise_variance(image, spacing, 1e5, 0)
    var_low = _noise_variance(image, spacing, 1e4, 1)
    assert 7.0 < var_low / var_high < 13.0  # 10x fewer photons -> 10x the variance


def _air_and_body(image):
    h, w = image.shape
    yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2,
                            indexing="ij")
    inside_fov = (yy**2 + xx**2).sqrt() < 0.47 * min(h, w)
    return (image < -950) & inside_fov, image > -500


def test_sparse_view_error_grows_and_streaks_into_the_air_around_the_body():
    image, spacing = real_image("CT")
    air, body = _air_and_body(image)
    sim = REGISTRY["ct_sparse_view"]
    air_energy = []
    for n in (120, 60, 30):
        err = sim.apply(image, spacing, CTSparseViewParams(n, 360), torch.Generator()) - image
        air_energy.append(float(err[air].pow(2).mean()))
        assert err[air].pow(2).mean() > 2 * err[body].pow(2).mean()  # streaks leave the body
    assert air_energy[0] < air_energy[1] < air_energy[2]
    # quantum noise, by contrast, is worst inside the body, where fewest photons get through
    noisy = REGISTRY["ct_lowdose"].apply(image, spacing, CTLowDoseParams(2e4, 0),
                                         torch.Generator().manual_seed(0))
    err = noisy - image
    assert err[air].pow(2).mean() < err[body].pow(2).mean()


def test_ring_artefact_is_rotationally_symmetric_about_the_centre(rng):
    image, spacing = real_image("CT")
    err = REGISTRY["ct_ring"].apply(image, spacing, CTRingParams(0.02, 0.1), rng) - image
    h, w = err.shape
    d = detector_size(h, w)  # the rotation axis is the padded detector's centre
    cy, cx = (d - 1) / 2 - (d - h) // 2, (d - 1) / 2 - (d - w) // 2
    yy, xx = torch.meshgrid(torch.arange(h) - cy, torch.arange(w) - cx, indexing="ij")
    radius = (4 * (yy**2 + xx**2).sqrt()).round().long()  # quarter-pixel radial bins
    inside = radius < 4 * (h // 2)
    profile = torch.zeros(int(radius.max()) + 1).index_add_(0, radius[inside], err[inside])
    count = torch.zeros_like(profile).index_add_(0, radius[inside], torch.ones_like(err[inside]))
    radial_mean = (profile / count.clamp_min(1))[radius]
    residual = (err - radial_mean)[inside].var()
    assert float(err[inside].var()) > 25.0  # rings are there (HU^2)
    assert residual < 0.25 * err[inside].var()  # and they are rings


def test_recon_blur_transfer_is_one_half_at_mtf50(rng):
    image = torch.zeros(128, 128)
    image[64, 64] = 1.0
    out = REGISTRY["ct_recon_blur"].apply(image, (1.0, 1.0), CTReconBlurParams(0.2), rng)
    mtf = torch.fft.fft2(out).abs()
    assert abs(float(mtf[0, round(0.2 * 128)]) - 0.5) < 0.03


def test_closed_forms_match_the_reference_fbp():
    """The fast simulators agree with explicit radon/fbp: sparse-view streak energy in the air
    on a real slice (streak placement differs by sub-pixel detector spread, so not pointwise),
    and the radial reconstruction of a view-independent sinogram."""
    image, spacing = real_image("CT")
    air, _ = _air_and_body(image)
    n, theta = 60, angles(360)
    mu = (image + 1000).clamp_min(0)  # the HU scale, which the streaks are linear in
    sino = radon(mu, theta)
    ref = fbp(sino[::6], theta[::6], *mu.shape) - fbp(sino, theta, *mu.shape)
    sim = REGISTRY["ct_sparse_view"]
    fast = sim.apply(image, spacing, CTSparseViewParams(n, 360), torch.Generator()) - image
    assert 0.67 < float(fast[air].pow(2).mean() / ref[air].pow(2).mean()) < 1.5
    point_fbp(n, 4, 4)  # the cached PSF renderer runs on its own too
    theta = angles(n)
    d = detector_size(48, 48)
    row = torch.zeros(d)
    row[d // 2 + 9] = row[d - 1 - (d // 2 + 9)] = 0.01
    ref = fbp(row[None].expand(n, d), theta, 48, 48)
    c = (d - 1) / 2 - (d - 48) // 2
    yy, xx = torch.meshgrid(torch.arange(48) - c, torch.arange(48) - c, indexing="ij")
    fast = radial_fbp(row, n, (yy**2 + xx**2).sqrt())
    assert float(torch.corrcoef(torch.stack([ref.flatten(), fast.flatten()]))[0, 1]) > 0.98
