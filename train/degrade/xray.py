"""Projection radiography (CR/DR, mammography, fluoroscopy frames) degradations.

Quantum noise, detector blur and scatter take pixel values as proportional to the detected X-ray
energy (linear detector, as in 'for processing' DR images; a reader presents MONOCHROME1 data
inverted), with the clean image's 99th percentile as the scale every parameter refers to, so
they work on any raw range. Exposure errors change which parts of the image reach the
detector's limits, so `xr_exposure` first maps the 'for presentation' grey levels back to dose.
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
    inverse_severity,
    poisson_counts,
    randn,
    register,
    robust_quantiles,
    uniform,
)
from .fourier import filter2d, gaussian_blur


@dataclass(frozen=True)
class XRQuantumNoiseParams:
    """quanta_ref: mean detected X-ray quanta per pixel where the image is at its 99th percentile
    (inf = no added noise). Dose is proportional to quanta."""

    quanta_ref: float


@register
class XRQuantumNoise(Degradation[XRQuantumNoiseParams]):
    """Quantum (Poisson) noise of a lower dose: detected quanta N ~ Poisson(dose x signal).

    SNR of a pixel is sqrt(N): halving the dose costs a factor sqrt(2) in SNR (Rose criterion).
    Bushberg et al., "The Essential Physics of Medical Imaging", 3rd ed., 2012, ch. 4 and 7.
    Severity = sqrt(50 / quanta_ref), proportional to the relative noise at the reference level.
    """

    name = "xr_quantum_noise"
    modalities = ("XR",)
    families = ("noise",)
    QUANTA_MIN = 50.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> XRQuantumNoiseParams:
        return XRQuantumNoiseParams(
            inverse_severity(draw_severity(rng, severity), self.QUANTA_MIN, 2))

    def apply(self, image: torch.Tensor, spacing: Spacing, params: XRQuantumNoiseParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        return poisson_counts(image, params.quanta_ref, rng)

    def severities(self, params: XRQuantumNoiseParams) -> dict[str, float]:
        return {"noise": clip01(math.sqrt(self.QUANTA_MIN / params.quanta_ref))}


@dataclass(frozen=True)
class XRDetectorBlurParams:
    """mtf50: frequency (cycles/pixel) where the detector MTF falls to 50 % (inf = sharp)."""

    mtf50: float


@register
class XRDetectorBlur(Degradation[XRDetectorBlurParams]):
    """Detector unsharpness: light spread in the scintillator (indirect) or phosphor (CR).

    Light spread has a near-exponential PSF whose MTF is Lorentzian, MTF(f) = 1 / (1 + (f /
    mtf50)^2). Swank, "Calculation of modulation transfer functions of X-ray fluorescent screens",
    Appl Opt 12(8), 1973; measured per IEC 62220-1. Severity = 0.06 / mtf50.
    """

    name = "xr_detector_blur"
    modalities = ("XR",)
    families = ("blur",)
    stage = RECONSTRUCTION
    MTF50_MIN = 0.06

    def sample(self, rng: torch.Generator, severity: float | None = None) -> XRDetectorBlurParams:
        return XRDetectorBlurParams(inverse_severity(draw_severity(rng, severity), self.MTF50_MIN))

    def apply(self, image: torch.Tensor, spacing: Spacing, params: XRDetectorBlurParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if not math.isfinite(params.mtf50):
            return image.clone()
        f50 = params.mtf50

        def transfer(fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
            return 1.0 / (1.0 + (fy**2 + fx**2) / f50**2)

        return filter2d(image, transfer, int(math.ceil(1.5 / f50)) + 1)

    def severities(self, params: XRDetectorBlurParams) -> dict[str, float]:
        return {"blur": clip01(self.MTF50_MIN / params.mtf50)}


@dataclass(frozen=True)
class XRScatterParams:
    """spr: scatter-to-primary ratio (mean scatter / mean primary; 0 = a perfect grid).
    kernel_fraction: FWHM of the scatter kernel as a fraction of the image's longer side."""

    spr: float
    kernel_fraction: float


@register
class XRScatter(Degradation[XRScatterParams]):
    """Scatter veil: a broad low-pass copy of the primary added on top, lowering contrast.

    Detected = primary + SPR x (primary convolved with a wide kernel); contrast of an object
    falls by 1 / (1 + SPR). Typical SPR: 0.3 with a grid, 1..4 for a thick body without.
    Boone & Seibert, "An analytical model of the scattered radiation distribution in diagnostic
    radiology", Med Phys 15(5), 1988. Reported as exposure/contrast. Severity = SPR / 2.
    """

    name = "xr_scatter"
    modalities = ("XR",)
    families = ("exposure",)
    SPR_MAX = 2.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> XRScatterParams:
        width = uniform(rng, 0.15, 0.4)
        return XRScatterParams(draw_severity(rng, severity) * self.SPR_MAX, width)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: XRScatterParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.spr <= 0:
            return image.clone()
        fwhm = params.kernel_fraction * max(image.shape[-2:])
        veil = gaussian_blur(image, fwhm, fwhm)
        return image + params.spr * veil * (image.mean() / veil.mean().clamp_min(1e-12))

    def severities(self, params: XRScatterParams) -> dict[str, float]:
        return {"exposure": clip01(params.spr / self.SPR_MAX)}


@dataclass(frozen=True)
class XRExposureParams:
    """ev: exposure error in stops (log2 of dose / correct dose; -3..3).
    saturation: detector saturation as a multiple of the dose at the clean image's 1st grey-level
    percentile (1.0: its most exposed 1% already sit at the limit, as when exposed to the right).
    bits: ADC depth over the range 0..saturation."""

    ev: float
    saturation: float
    bits: int


@register
class XRExposure(Degradation[XRExposureParams]):
    """Under- and over-exposure of a digital detector, simulated in the dose domain.

    The packaged radiographs are 'for presentation' images: after the MONOCHROME1 inversion,
    grey level is close to linear in log dose and bright means attenuating (bone) or collimated,
    i.e. little dose. So the clean image's grey levels are mapped back to relative dose, with its
    1st..99th percentiles spanning LATITUDE_STOPS stops (dose 1 at the 1st percentile; the scale
    is fitted per image, so each crop gets its own). A dose error of 2^ev then acts on the
    detector: below the correct dose, fewer quanta add noise of the Poisson variance (Gaussian;
    the clean image holds QUANTA_CLEAN quanta at dose 1) and fewer ADC levels posterise the dense
    parts; above it, the most exposed parts saturate (burn-out of lung, skin line and soft
    tissue), rendered as one flat grey level. Automatic rescaling (exposure-index normalisation)
    divides the error back out and the log-domain rendering maps the result to the clean image's
    grey scale (clipped at its white), so an exposure error shows as noise or lost detail
    rather than as a global brightness change. A DR detector's latitude is wider than this
    model's saturation at the clean dose; it is a deliberately harsh reading of overexposure.
    As the clean image's most exposed 1% already sit at the limit, any ev != 0 renders the
    pixels beyond it (more than |ev| stops beyond it, for ev < 0) as the saturation grey, a
    small step at ev = 0, where the image comes back unchanged.
    Seibert, "Digital radiography: image quality and radiation dose", Health Phys 95(5), 2008;
    Bushberg et al., "The Essential Physics of Medical Imaging", 3rd ed., 2012, ch. 7.
    Severity = |ev| / 3.
    """

    name = "xr_exposure"
    modalities = ("XR",)
    families = ("exposure",)
    EV_MAX = 3.0
    QUANTA_CLEAN = 1000.0
    LATITUDE_STOPS = 5.0
    SATURATION = 1.0
    BITS = 12

    def sample(self, rng: torch.Generator, severity: float | None = None) -> XRExposureParams:
        sign = 1.0 if uniform(rng) < 0.5 else -1.0
        return XRExposureParams(sign * draw_severity(rng, severity) * self.EV_MAX,
                                self.SATURATION, self.BITS)

    def grey_scale(self, image: torch.Tensor) -> tuple[float, float]:
        """(grey level of dose 1, grey levels per stop): the clean image's rendering."""
        lo, hi = robust_quantiles(image, (0.01, 0.99))
        return lo, max(hi - lo, 1e-6) / self.LATITUDE_STOPS

    def saturated_grey(self, image: torch.Tensor, params: XRExposureParams) -> float:
        """The grey level every saturated pixel gets for ev != 0 (the darkest the output can
        be); at ev = 0 `apply` returns the image as it is."""
        lo, per_stop = self.grey_scale(image)
        return lo - per_stop * math.log2(params.saturation / 2.0**params.ev)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: XRExposureParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.ev == 0:
            return image.clone()
        lo, per_stop = self.grey_scale(image)
        # Outliers far outside the 1..99% range would overflow exp2: dose 2^-30..2^30 is plenty.
        dose = torch.exp2((-(image.float() - lo) / per_stop).clamp(-30.0, 30.0))
        gain = 2.0**params.ev
        if gain < 1:  # extra Poisson variance of the lower dose, in units of the clean dose
            extra_var = (1.0 / gain - 1.0) * dose / self.QUANTA_CLEAN
            dose = dose + extra_var.sqrt() * randn(image.shape, rng, image.device)
        step = params.saturation / 2**params.bits
        detected = torch.round((dose * gain).clamp(0, params.saturation) / step) * step
        rescaled = detected.clamp_min(step) / gain  # the ADC's lowest level stands in for 0
        white = float(image.max())  # no quanta at all renders as the display's white, no brighter
        return (lo - per_stop * torch.log2(rescaled)).clamp(max=white).float()

    def severities(self, params: XRExposureParams) -> dict[str, float]:
        return {"exposure": clip01(abs(params.ev) / self.EV_MAX)}
