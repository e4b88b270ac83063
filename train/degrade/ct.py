"""CT degradations, simulated in the projection (sinogram) domain where CT physics happens.

Hounsfield units are turned into linear attenuation, mu = mu_water (1 + HU / 1000), with
mu_water = 0.0192 / mm (water near the 70 keV effective energy of a 120 kVp beam); line integrals
p = sum mu dl are taken by a parallel-beam Radon transform (radon.py) and the artefact is
reconstructed by filtered back-projection. Only the CHANGE is reconstructed and added to the
original image (FBP is linear), so the anatomy keeps its native detail and severity 0 is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import (
    RECONSTRUCTION,
    Degradation,
    Spacing,
    check_image,
    clip01,
    draw_severity,
    poisson,
    randn,
    register,
    uniform,
)
from .fourier import filter2d
from .radon import angles, detector_size, fbp, radon

MU_WATER_PER_MM = 0.0192


def _line_integrals(image_hu: torch.Tensor, pixel_mm: float, theta: torch.Tensor) -> torch.Tensor:
    """Dimensionless line integrals p (A, D) of the attenuation map of a HU image."""
    mu_per_px = MU_WATER_PER_MM * pixel_mm * (1.0 + image_hu.clamp_min(-1000.0) / 1000.0)
    return radon(mu_per_px, theta)


def _to_hu(mu_per_px: torch.Tensor, pixel_mm: float) -> torch.Tensor:
    """Attenuation change per pixel length -> HU change."""
    return mu_per_px / (MU_WATER_PER_MM * pixel_mm) * 1000.0


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
        s = draw_severity(rng, severity)
        return CTLowDoseParams(math.inf if s == 0 else self.I0_MIN / s**2, 0)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: CTLowDoseParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if not math.isfinite(params.i0):
            return image.clone()
        h, w = image.shape
        pixel_mm = 0.5 * (spacing[0] + spacing[1])
        theta = angles(params.n_views or _views(image), image.device)
        p = _line_integrals(image, pixel_mm, theta)
        counts = poisson(params.i0 * torch.exp(-p), rng).clamp_min(1.0)
        noise = -torch.log(counts / params.i0) - p
        return image + _to_hu(fbp(noise, theta, h, w), pixel_mm)

    def severities(self, params: CTLowDoseParams) -> dict[str, float]:
        return {"noise": clip01(math.sqrt(self.I0_MIN / params.i0))}


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
        pixel_mm = 0.5 * (spacing[0] + spacing[1])
        theta = angles(params.full_views, image.device)
        p = _line_integrals(image, pixel_mm, theta)
        keep = torch.linspace(0, params.full_views, params.n_views + 1, device=image.device)
        keep = keep[:-1].round().long()
        streaks = fbp(p[keep], theta[keep], h, w) - fbp(p, theta, h, w)
        return image + _to_hu(streaks, pixel_mm)

    def severities(self, params: CTSparseViewParams) -> dict[str, float]:
        s = math.log(params.full_views / max(1, params.n_views))
        s /= math.log(params.full_views / self.MIN_VIEWS)
        s = clip01(s)
        return {"streaks": s, "undersampling": 0.5 * s}


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
        n_views = _views(image)
        theta = angles(n_views, image.device)
        rings = fbp(offset[None].expand(n_views, d), theta, h, w)
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
        s = draw_severity(rng, severity)
        return CTReconBlurParams(math.inf if s == 0 else self.MTF50_MIN / s)

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
