"""Ultrasound (B-mode) degradations, applied to the echo envelope behind the display.

Stored B-mode pixels are log-compressed envelope: I = M (1 + 20 log10(E) / DR), with M the
display maximum and DR = 60 dB the dynamic range. Each simulator decompresses to the envelope E,
acts there (where speckle is multiplicative and gains are factors) and compresses back. Rows are
depth (the axial direction), columns the lateral direction. Colour frames get the same factor on
every channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .base import (
    RECONSTRUCTION,
    STORAGE,
    Degradation,
    Spacing,
    check_image,
    clip01,
    draw_severity,
    randn,
    register,
    uniform,
)
from .fourier import gaussian_blur

DYNAMIC_RANGE_DB = 60.0


def _display_max(image: torch.Tensor) -> float:
    return max(float(image.max()), 1e-6)


def _on_envelope(image: torch.Tensor,
                 act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Decompress the display to the envelope, apply `act` there, compress back (same peak)."""
    peak = _display_max(image)
    return to_display(act(to_envelope(image, peak)), peak)


def to_envelope(image: torch.Tensor, peak: float) -> torch.Tensor:
    """Log-compressed display (0..peak) -> linear envelope amplitude (1e-3..1)."""
    return torch.pow(10.0, (image.clamp(0, peak) / peak - 1.0) * DYNAMIC_RANGE_DB / 20.0)


def to_display(envelope: torch.Tensor, peak: float) -> torch.Tensor:
    """Linear envelope -> log-compressed display, clipped to 0..peak as a scanner would."""
    db = 20.0 * torch.log10(envelope.clamp_min(1e-12))
    return (peak * (1.0 + db / DYNAMIC_RANGE_DB)).clamp(0, peak).float()


@dataclass(frozen=True)
class USSpeckleParams:
    """fraction: share of the echo power turned into fully developed speckle (0..1).
    grain_px: (axial, lateral) FWHM of the speckle grain (the resolution cell), pixels."""

    fraction: float
    grain_px: tuple[float, float]


@register
class USSpeckle(Degradation[USSpeckleParams]):
    """Multiplicative speckle: coherent sum of sub-resolution scatterers, Rayleigh amplitude.

    E' = E |sqrt(1 - a) + sqrt(a) z|, z a circular complex Gaussian field correlated over the
    resolution cell (unit power), so mean power is kept and a = 1 gives fully developed
    speckle with SNR 1.91. Wagner et al., "Statistics of speckle in ultrasound B-scans", IEEE
    Trans Sonics Ultrason 30(3), 1983. Severity = a.
    """

    name = "us_speckle"
    modalities = ("US",)
    families = ("noise",)

    def sample(self, rng: torch.Generator, severity: float | None = None) -> USSpeckleParams:
        axial = uniform(rng, 1.0, 2.5)
        lateral = axial * uniform(rng, 1.5, 3.0)
        return USSpeckleParams(draw_severity(rng, severity), (axial, lateral))

    def apply(self, image: torch.Tensor, spacing: Spacing, params: USSpeckleParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.fraction <= 0:
            return image.clone()
        h, w = image.shape[-2:]
        re, im = randn((h, w), rng, image.device), randn((h, w), rng, image.device)
        z = torch.complex(gaussian_blur(re, *params.grain_px), gaussian_blur(im, *params.grain_px))
        z = z / z.abs().pow(2).mean().sqrt()
        factor = (math.sqrt(1.0 - params.fraction) + math.sqrt(params.fraction) * z).abs()
        return _on_envelope(image, lambda envelope: envelope * factor)

    def severities(self, params: USSpeckleParams) -> dict[str, float]:
        return {"noise": clip01(params.fraction)}


@dataclass(frozen=True)
class USGainParams:
    """gain_db: overall receive gain error, dB. tgc_db: time-gain-compensation error reached at
    the bottom of the image, dB (linear in depth from 0 at the top)."""

    gain_db: float
    tgc_db: float


@register
class USGain(Degradation[USGainParams]):
    """Wrong overall gain and wrong time-gain compensation (depth-dependent attenuation).

    Tissue attenuates about 0.5 dB/cm/MHz each way; TGC adds gain with depth to undo it. A wrong
    overall gain lifts or sinks the whole image into saturation or black; a wrong TGC slope leaves
    the deep field too dark or too bright. Szabo, "Diagnostic Ultrasound Imaging: Inside Out",
    2nd ed., 2014, ch. 4 and 10. Severities: exposure = |gain| / 18 dB, bias = |tgc| / 18 dB.
    """

    name = "us_gain"
    modalities = ("US",)
    families = ("exposure", "bias")
    DB_MAX = 18.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> USGainParams:
        share, sign_g, sign_t = uniform(rng), uniform(rng), uniform(rng)
        s = draw_severity(rng, severity) * self.DB_MAX
        a, b = (1.0, share) if share < 0.5 else (share, 1.0)
        gain = (1.0 if sign_g < 0.5 else -1.0) * s * a
        return USGainParams(gain, (1.0 if sign_t < 0.5 else -1.0) * s * b)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: USGainParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.gain_db == 0 and params.tgc_db == 0:
            return image.clone()
        h = image.shape[-2]
        depth = torch.linspace(0.0, 1.0, h, device=image.device)[:, None]
        factor = torch.pow(10.0, (params.gain_db + params.tgc_db * depth) / 20.0)
        return _on_envelope(image, lambda envelope: envelope * factor)

    def severities(self, params: USGainParams) -> dict[str, float]:
        return {"exposure": clip01(abs(params.gain_db) / self.DB_MAX),
                "bias": clip01(abs(params.tgc_db) / self.DB_MAX)}


@dataclass(frozen=True)
class USResolutionParams:
    """axial_fwhm_px, lateral_fwhm_px: extra PSF width along depth (pulse length) and across the
    beam (beam width, worse out of focus), pixels."""

    axial_fwhm_px: float
    lateral_fwhm_px: float


@register
class USResolution(Degradation[USResolutionParams]):
    """Resolution loss: longer pulse (axial) and wider beam (lateral), lateral the worse.

    Axial resolution is about half the spatial pulse length; lateral resolution is the beam
    width, about lambda x F-number at the focus and wider away from it, so lateral blur exceeds
    axial. Applied as an anisotropic Gaussian on the envelope. Szabo 2014, ch. 7. Severity =
    max(axial / 3, lateral / 8) pixels.
    """

    name = "us_resolution"
    modalities = ("US",)
    families = ("blur",)
    stage = RECONSTRUCTION
    AXIAL_MAX, LATERAL_MAX = 3.0, 8.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> USResolutionParams:
        axial_share = uniform(rng, 0.3, 1.0)
        s = draw_severity(rng, severity)
        return USResolutionParams(s * axial_share * self.AXIAL_MAX, s * self.LATERAL_MAX)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: USResolutionParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.axial_fwhm_px <= 0 and params.lateral_fwhm_px <= 0:
            return image.clone()
        return _on_envelope(image, lambda envelope: gaussian_blur(
            envelope, params.axial_fwhm_px, params.lateral_fwhm_px))

    def severities(self, params: USResolutionParams) -> dict[str, float]:
        return {"blur": clip01(max(params.axial_fwhm_px / self.AXIAL_MAX,
                                   params.lateral_fwhm_px / self.LATERAL_MAX))}


@dataclass(frozen=True)
class USGreyMapParams:
    """level: share of the display's grey range the image keeps (1 = as acquired)."""

    level: float


@register
class USGreyMap(Degradation[USGreyMapParams]):
    """A dim grey map: every displayed grey level scaled toward black, nothing clipped.

    Under-gain (USGain) shifts the log-compressed display down and crushes the weak echoes into
    black. A grey map set too dark, a low output brightness of a frame grabber or an export at a
    low level does something else to the stored frame: it multiplies the display, so the black
    level stays, the contrast between tissues shrinks by the same factor and the image uses a
    fraction of its bit depth, with no clipping to give it away (the robust scaling of the
    network's patches undoes the factor; only the bit-depth measures and the grey levels lost to
    rounding keep it). Integer frames are rounded back to integers, as a stored frame would be.
    Severity: exposure = (1 - level) / 0.7 (level 0.3 at full severity).
    """

    name = "us_grey_map"
    modalities = ("US",)
    families = ("exposure",)
    stage = STORAGE
    LEVEL_SPAN = 0.7

    def sample(self, rng: torch.Generator, severity: float | None = None) -> USGreyMapParams:
        return USGreyMapParams(1.0 - self.LEVEL_SPAN * draw_severity(rng, severity))

    def apply(self, image: torch.Tensor, spacing: Spacing, params: USGreyMapParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.level >= 1.0:
            return image.clone()
        dimmed = image * params.level
        if bool(torch.all(image == torch.round(image))):
            dimmed = torch.round(dimmed)
        return dimmed.to(image.dtype)

    def severities(self, params: USGreyMapParams) -> dict[str, float]:
        return {"exposure": clip01((1.0 - params.level) / self.LEVEL_SPAN)}
