"""Nuclear medicine (planar scintigraphy, SPECT, PET) degradations.

Pixel values are taken as proportional to detected counts (or activity); the clean image's 99th
percentile is the reference level every parameter refers to.
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
    register,
)
from .fourier import gaussian_blur


@dataclass(frozen=True)
class NMCountsParams:
    """peak_counts: expected counts in a pixel at the image's 99th percentile after shortening
    the acquisition (counts scale with time x activity; inf = no added noise)."""

    peak_counts: float


@register
class NMCounts(Degradation[NMCountsParams]):
    """Count-limited noise of a short acquisition (or low injected activity): Poisson counts.

    Counts ~ Poisson(peak_counts x image / P99), rescaled to the original units; relative noise
    is 1 / sqrt(counts). Cherry, Sorenson & Phelps, "Physics in Nuclear Medicine", 4th ed., 2012,
    ch. 9 and 15. Severity = sqrt(5 / peak_counts), proportional to the relative noise at peak.
    """

    name = "nm_counts"
    modalities = ("NM",)
    families = ("noise",)
    COUNTS_MIN = 5.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> NMCountsParams:
        return NMCountsParams(inverse_severity(draw_severity(rng, severity), self.COUNTS_MIN, 2))

    def apply(self, image: torch.Tensor, spacing: Spacing, params: NMCountsParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        return poisson_counts(image, params.peak_counts, rng)

    def severities(self, params: NMCountsParams) -> dict[str, float]:
        return {"noise": clip01(math.sqrt(self.COUNTS_MIN / params.peak_counts))}


@dataclass(frozen=True)
class NMSmoothingParams:
    """fwhm_px: FWHM of the extra Gaussian blur (post-filter or wider collimator), pixels."""

    fwhm_px: float


@register
class NMSmoothing(Degradation[NMSmoothingParams]):
    """Extra smoothing: a heavier reconstruction post-filter or a lower-resolution collimator.

    Both act as a near-Gaussian PSF whose FWHM adds in quadrature to the system's. Cherry et al.
    2012, ch. 14 (collimator resolution) and 16 (reconstruction filters). Severity = FWHM / 4 px.
    """

    name = "nm_smoothing"
    modalities = ("NM",)
    families = ("blur",)
    stage = RECONSTRUCTION
    FWHM_MAX = 4.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> NMSmoothingParams:
        return NMSmoothingParams(draw_severity(rng, severity) * self.FWHM_MAX)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: NMSmoothingParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        return gaussian_blur(image, params.fwhm_px, params.fwhm_px)

    def severities(self, params: NMSmoothingParams) -> dict[str, float]:
        return {"blur": clip01(params.fwhm_px / self.FWHM_MAX)}
