"""CT degradations, simulated in the projection (sinogram) domain where CT physics happens.

Hounsfield units are turned into linear attenuation, mu = mu_water (1 + HU / 1000), with
mu_water = 0.0192 / mm (water near the 70 keV effective energy of a 120 kVp beam); line integrals
p = sum mu dl are taken by a parallel-beam Radon transform (radon.py) and the artefact is
reconstructed by filtered back-projection. Only the CHANGE is reconstructed and added to the
original image (FBP is linear), so the anatomy keeps its native detail and severity 0 is exact.

Speed (these run on the fly in data-loader workers: 2-5 ms a 256^2 slice on one thread, where
an explicit Radon + FBP took ~1 s) comes from closed forms of the same FBP, not from a coarser
one:
- sparse view: FBP with a fixed angle set is linear and shift-invariant, so FBP(sparse) -
  FBP(dense) of the slice's sinogram is the attenuation map convolved with the difference of the
  two point spread functions (radon.point_fbp), done by FFT. The PSFs are cached per (size,
  views). Approximation: a point projects onto one detector sample (no bilinear spread from a
  rotated pixel grid) through the band-limited ramp, the back-projector's linear
  interpolation enters as a radial sinc^2 filter, and the sparse views are exactly
  equispaced (k pi / n) instead of the nearest of the dense views.
- rings: a column-constant sinogram reconstructs to a function of radius only; it is
  reconstructed on a radial grid and interpolated (radon.radial_fbp). Exact up to the
  view-sampling ripple, which is below the interpolation error.
- low dose: quantum noise is reconstructed under local stationarity (the per-ray variance
  changes slowly across the ~2-sample reach of the ramp kernel): the FBP noise variance map is
  the back-projection of the per-ray variance 1 / (I0 exp(-p)), computed on a <= 64^2 grid with
  64 views (it is smooth), times a stationary texture with the FBP noise power spectrum
  NPS(f) ~ |f| sinc^4(f) (ramp times linear interpolation, detector pitch = pixel) up to
  Nyquist. Kept: variance ~ 1 / I0 and ~ 1 / views, higher behind dense anatomy, ramp-kernel
  texture at full resolution. Lost: the correlation of noise ALONG individual rays, i.e. the
  directional streaks of photon starvation (the floor is still applied to the variance);
  Gaussian instead of Poisson counts (I0 exp(-p) >= ~50 photons at the lowest dose here).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import (
    RECONSTRUCTION,
    Degradation,
    Spacing,
    check_image,
    clip01,
    draw_severity,
    inverse_severity,
    randn,
    register,
    uniform,
)
from .fourier import filter2d
from .radon import angles, backproject, detector_size, point_fbp, radial_fbp, radon

MU_WATER_PER_MM = 0.0192


def _line_integrals(image_hu: torch.Tensor, pixel_mm: float, theta: torch.Tensor) -> torch.Tensor:
    """Dimensionless line integrals p (A, D) of the attenuation map of a HU image."""
    mu_per_px = MU_WATER_PER_MM * pixel_mm * (1.0 + image_hu.clamp_min(-1000.0) / 1000.0)
    return radon(mu_per_px, theta)


def _to_hu(mu_per_px: torch.Tensor, pixel_mm: float) -> torch.Tensor:
    """Attenuation change per pixel length -> HU change."""
    return mu_per_px / (MU_WATER_PER_MM * pixel_mm) * 1000.0


# Noise variance of ramp-filtered unit white noise read by linear interpolation at a uniformly
# random sub-sample position: (2/3) R(0) + (1/3) R(1), with R the ramp kernel's autocorrelation,
# R(0) = 1/16 + 2 sum_odd 1/(pi k)^4 = 1/12 and R(1) = 2 h(0) h(1) = -1/(2 pi^2).
_RAMP_LERP_VARIANCE = (2.0 / 3.0) / 12.0 - (1.0 / 3.0) / (2.0 * math.pi**2)
_VARIANCE_GRID = 64  # side of the grid and views of the (smooth) noise-variance map


def _views(image: torch.Tensor) -> int:
    """Views of the simulated full scan: about pi/2 x the detector length, capped for speed."""
    return min(360, max(180, max(image.shape[-2:])))


# --- low dose --------------------------------------------------------------------------------

@dataclass(frozen=True)
class CTLowDoseParams:
    """i0: incident photons per detector element per view (inf = no added quantum noise).
    n_views: views over 180 degrees in the simulated scan; 0 = from the image size
        (max(H, W) clipped to 180..360)."""

    i0: float
    n_views: int


@register
class CTLowDose(Degradation[CTLowDoseParams]):
    """Low-dose CT: Poisson photon counts on the transmitted intensity I0 exp(-p).

    Counts N ~ Poisson(I0 exp(-p)) (at least one photon: starvation floor), p_noisy = -ln(N / I0);
    the sinogram noise p_noisy - p is reconstructed by FBP and added to the image. Its variance
    in each ray is about 1 / (I0 exp(-p)), so image noise variance scales as 1 / I0 (dose), and
    rays through dense anatomy are the noisiest (streaky noise). Zeng et al., "A simple low-dose
    x-ray CT simulation from high-dose scan", IEEE TNS 62(5), 2015; Yu et al., J Comput Assist
    Tomogr 36(4), 2012. Severity = sqrt(I0_min / I0), proportional to the noise standard deviation.
    """

    name = "ct_lowdose"
    modalities = ("CT",)
    families = ("noise",)
    I0_MIN = 5.0e3  # photons per element per view at severity 1 (ultra-low dose)

    def sample(self, rng: torch.Generator, severity: float | None = None) -> CTLowDoseParams:
        return CTLowDoseParams(inverse_severity(draw_severity(rng, severity), self.I0_MIN, 2), 0)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: CTLowDoseParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if not math.isfinite(params.i0):
            return image.clone()
        pixel_mm = 0.5 * (spacing[0] + spacing[1])
        variance = _fbp_noise_variance(image, pixel_mm, params.i0,
                                       params.n_views or _views(image))
        texture = _fbp_noise_texture(image.shape, rng, image.device)
        return image + _to_hu(variance.sqrt() * texture, pixel_mm)

    def severities(self, params: CTLowDoseParams) -> dict[str, float]:
        return {"noise": clip01(math.sqrt(self.I0_MIN / params.i0))}


def _fbp_noise_variance(image_hu: torch.Tensor, pixel_mm: float, i0: float,
                        n_views: int) -> torch.Tensor:
    """Variance (mu per pixel)^2 of the FBP of Poisson noise, per pixel of the (H, W) image.

    Var(x) = (pi / A)^2 c sum_a var(a, x . theta_a), c = _RAMP_LERP_VARIANCE, var = 1 / counts:
    (pi / A) c times the back-projection of the per-ray variance, which is smooth, so the
    projection and back-projection run on a coarse grid (same field, coarse pixels).
    """
    h, w = image_hu.shape
    scale = max(1.0, max(h, w) / _VARIANCE_GRID)
    hc, wc = max(1, round(h / scale)), max(1, round(w / scale))
    coarse = F.interpolate(image_hu[None, None], size=(hc, wc), mode="area")[0, 0]
    coarse_px = 0.5 * (h / hc + w / wc)  # fine pixels per coarse pixel
    theta = angles(min(n_views, _VARIANCE_GRID), image_hu.device)
    p = _line_integrals(coarse, pixel_mm * coarse_px, theta)
    ray_variance = 1.0 / (i0 * torch.exp(-p)).clamp_min(1.0)  # >= 1 photon: starvation floor
    var = backproject(ray_variance, theta, hc, wc) * (math.pi / n_views * _RAMP_LERP_VARIANCE)
    return F.interpolate(var[None, None], size=(h, w), mode="bilinear",
                         align_corners=False)[0, 0].clamp_min(0.0)


@functools.lru_cache(maxsize=8)
def _nps_amplitude(h: int, w: int) -> torch.Tensor:
    """rfft2-shaped amplitude sqrt(NPS) of FBP noise, scaled to unit variance."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    rho = (fy**2 + fx**2).sqrt()
    amp = torch.where(rho <= 0.5, rho.sqrt() * torch.special.sinc(rho) ** 2, 0.0)
    # Parseval over the full spectrum: rfft columns other than 0 (and w/2) stand for two.
    weight = torch.full((w // 2 + 1,), 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    return amp / ((amp**2 * weight).sum() / (h * w)).sqrt()


def _fbp_noise_texture(shape: torch.Size, rng: torch.Generator,
                       device: torch.device) -> torch.Tensor:
    """Unit-variance stationary noise with the power spectrum of ramp-filtered FBP noise."""
    h, w = shape
    white = randn((h, w), rng, device)
    amp = _nps_amplitude(h, w).to(device)
    return torch.fft.irfft2(torch.fft.rfft2(white) * amp, s=(h, w))


# --- sparse view -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CTSparseViewParams:
    """n_views: projections over 180 degrees actually used for reconstruction.
    full_views: projections of the reference (dense) scan the image stands for."""

    n_views: int
    full_views: int


@register
class CTSparseView(Degradation[CTSparseViewParams]):
    """Sparse-view streaks: FBP from too few projection angles.

    Each projection smeared back is a set of lines; with few angles they no longer cancel away
    from edges, leaving streaks radiating from high-contrast structures and filling the air
    around the body. Added as FBP(sparse) - FBP(dense) of the same sinogram. Chen, Tang & Leng,
    "Prior image constrained compressed sensing (PICCS)", Med Phys 35(2), 2008; Kak & Slaney ch. 5.
    Severity = ln(full / n) / ln(full / 18) (log views: halving views is one step).
    """

    name = "ct_sparse_view"
    modalities = ("CT",)
    families = ("streaks", "undersampling")
    stage = RECONSTRUCTION
    FULL_VIEWS = 360
    MIN_VIEWS = 18

    def sample(self, rng: torch.Generator, severity: float | None = None) -> CTSparseViewParams:
        s = draw_severity(rng, severity)
        n = round(self.FULL_VIEWS * (self.MIN_VIEWS / self.FULL_VIEWS) ** s)
        return CTSparseViewParams(int(n), self.FULL_VIEWS)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: CTSparseViewParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.n_views >= params.full_views:
            return image.clone()
        h, w = image.shape
        # mu is linear in HU + 1000 and the HU conversion undoes the scale: convolve that
        # directly (zero outside the image, like the zero-padded Radon transform).
        density = (image + 1000.0).clamp_min(0.0)
        spectrum = _streak_spectrum(max(1, params.n_views), params.full_views, h, w)
        size = (2 * h, 2 * w)
        streaks = torch.fft.irfft2(torch.fft.rfft2(density, s=size) * spectrum.to(image.device),
                                   s=size)[:h, :w]
        return image + streaks

    def severities(self, params: CTSparseViewParams) -> dict[str, float]:
        s = math.log(params.full_views / max(1, params.n_views))
        s /= math.log(params.full_views / self.MIN_VIEWS)
        s = clip01(s)
        return {"streaks": s, "undersampling": 0.5 * s}


@functools.lru_cache(maxsize=384)
def _psf_quadrant(n_views: int, h: int, w: int) -> torch.Tensor:
    """Cached radon.point_fbp. Training draws n in 18..360 (343 values) per image size; a miss
    costs ~n x 0.5 ms at 256^2 (one thread), an entry H x W floats (256 KB at 256^2), so the
    cache holds every count of one size (~90 MB) rather than re-rendering them."""
    return point_fbp(n_views, h, w)


def _streak_spectrum(n_views: int, full_views: int, h: int, w: int) -> torch.Tensor:
    """rfft2 (2H, 2W) of PSF(n views) - PSF(full views), laid out for circular convolution.

    Offsets up to +-(H - 1), +-(W - 1) reach every output pixel from every input pixel, and a
    2H x 2W period keeps them apart, so the circular convolution equals the linear one on the
    image.
    """
    quadrant = _psf_quadrant(n_views, h, w) - _psf_quadrant(full_views, h, w)
    kernel = torch.zeros(2 * h, 2 * w)
    kernel[:h, :w] = quadrant
    kernel[h + 1:, :w] = quadrant[1:].flip(0)
    kernel[:, w + 1:] = kernel[:, 1:w].flip(1)
    # The back-projector's linear interpolation: sinc^2 along every projection. Each view's
    # line lies along one radial direction of the 2D spectrum, so a radial filter applies it.
    fy = torch.fft.fftfreq(2 * h)[:, None]
    fx = torch.fft.rfftfreq(2 * w)[None, :]
    return torch.fft.rfft2(kernel) * torch.special.sinc((fy**2 + fx**2).sqrt()) ** 2


# --- rings -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CTRingParams:
    """gain_error: std of the relative gain error of miscalibrated detector elements (e.g. 0.01
    = 1 %). defect_fraction: fraction of detector elements that are miscalibrated (0..1)."""

    gain_error: float
    defect_fraction: float


@register
class CTRing(Degradation[CTRingParams]):
    """Ring artefacts from detector elements with wrong gain (third-generation geometry).

    An element with gain g measures I0 g exp(-p), i.e. p - ln g at every view: a constant offset
    along one sinogram column, which FBP of a 360-degree scan turns into a full ring centred on
    the rotation axis. Rings are
    reported as streaks (structured, reconstruction-born artefacts). Barrett & Keat, "Artifacts
    in CT: recognition and avoidance", RadioGraphics 24(6), 2004. Severity = gain_error / 3 %.
    """

    name = "ct_ring"
    modalities = ("CT",)
    families = ("streaks",)
    stage = RECONSTRUCTION
    GAIN_ERROR_MAX = 0.03

    def sample(self, rng: torch.Generator, severity: float | None = None) -> CTRingParams:
        fraction = uniform(rng, 0.02, 0.15)
        return CTRingParams(draw_severity(rng, severity) * self.GAIN_ERROR_MAX, fraction)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: CTRingParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.gain_error <= 0 or params.defect_fraction <= 0:
            return image.clone()
        h, w = image.shape
        d = detector_size(h, w)
        pixel_mm = 0.5 * (spacing[0] + spacing[1])
        draws = torch.rand(d, generator=rng, device=rng.device).to(image.device)
        gains = 1.0 + params.gain_error * randn((d,), rng, image.device)
        offset = torch.where(draws < params.defect_fraction, -torch.log(gains.clamp_min(0.5)), 0.0)
        # A 360-degree scan sees each element at +t and, half a turn later, at -t: in the
        # equivalent 180-degree parallel sinogram the offset sits at both, and rings close.
        offset = 0.5 * (offset + offset.flip(0))
        top, left = (d - h) // 2, (d - w) // 2
        centre = (d - 1) / 2.0  # the rotation axis: the padded detector's centre
        y = torch.arange(h, device=image.device, dtype=torch.float32) + top - centre
        x = torch.arange(w, device=image.device, dtype=torch.float32) + left - centre
        radius = (y[:, None] ** 2 + x[None, :] ** 2).sqrt()
        rings = radial_fbp(offset, _views(image), radius)
        return image + _to_hu(rings, pixel_mm)

    def severities(self, params: CTRingParams) -> dict[str, float]:
        return {"streaks": clip01(params.gain_error / self.GAIN_ERROR_MAX)}


# --- reconstruction blur ---------------------------------------------------------------------

@dataclass(frozen=True)
class CTReconBlurParams:
    """mtf50: spatial frequency (cycles/pixel) where the reconstruction kernel's MTF falls to
    50 % (inf = the original kernel; 0.5 = Nyquist)."""

    mtf50: float


@register
class CTReconBlur(Degradation[CTReconBlurParams]):
    """A softer reconstruction kernel: the ramp filter apodised by a Gaussian window.

    By the central slice theorem, apodising the FBP ramp with a window W(|f|) equals filtering
    the image with the radial 2D transfer function W(|f|), so it is applied in the image domain:
    MTF(f) = exp(-ln 2 (f / mtf50)^2). Kak & Slaney ch. 3 (windowed ramp filters); kernels
    quoted by MTF50 as in IEC 61223-3-5. Severity = 0.08 / mtf50.
    """

    name = "ct_recon_blur"
    modalities = ("CT",)
    families = ("blur",)
    stage = RECONSTRUCTION
    MTF50_MIN = 0.08

    def sample(self, rng: torch.Generator, severity: float | None = None) -> CTReconBlurParams:
        return CTReconBlurParams(inverse_severity(draw_severity(rng, severity), self.MTF50_MIN))

    def apply(self, image: torch.Tensor, spacing: Spacing, params: CTReconBlurParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if not math.isfinite(params.mtf50):
            return image.clone()
        return radial_mtf_blur(image, params.mtf50)

    def severities(self, params: CTReconBlurParams) -> dict[str, float]:
        return {"blur": clip01(self.MTF50_MIN / params.mtf50)}


def radial_mtf_blur(image: torch.Tensor, mtf50: float) -> torch.Tensor:
    """Filter with MTF(f) = exp(-ln 2 (f / mtf50)^2), f the radial frequency in cycles/pixel."""
    k = math.log(2.0) / mtf50**2

    def transfer(fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return torch.exp(-k * (fy**2 + fx**2))

    return filter2d(image, transfer, int(math.ceil(0.6 / mtf50)) + 1)
