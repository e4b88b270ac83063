"""Photographic modalities (fundus cameras, histology slide scanners): 0..255 RGB, (3, H, W).

Optics act on linear light, so exposure and illumination decode the sRGB-like gamma (2.2)
first; blurs act on the stored values (a good approximation at these contrasts, and what
scanner firmware sharpening sees). Outputs are clipped to 0..255 like a camera's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import (
    Degradation,
    Spacing,
    check_image,
    clip01,
    draw_severity,
    inverse_severity,
    poisson,
    randn,
    register,
    uniform,
)
from .fields import legendre_field, random_coefficients
from .fourier import filter2d

PHOTO = ("FUNDUS", "HISTO")
GAMMA = 2.2


def _to_linear(image: torch.Tensor) -> torch.Tensor:
    return (image.clamp(0, 255) / 255.0) ** GAMMA


def _to_stored(linear: torch.Tensor) -> torch.Tensor:
    return (255.0 * linear.clamp(0, 1) ** (1.0 / GAMMA)).float()


def _sensor_capture(linear: torch.Tensor, full_well_e: float, read_noise_e: float,
                    rng: torch.Generator) -> torch.Tensor:
    """Linear light as a sensor stores it: Poisson photon noise on full_well_e electrons at
    white plus Gaussian read-out noise, then the stored gamma and 8 bits."""
    noisy = poisson(linear * full_well_e, rng) + read_noise_e * randn(linear.shape, rng,
                                                                       linear.device)
    return torch.round(_to_stored(noisy / full_well_e))


@dataclass(frozen=True)
class DefocusParams:
    """radius_px: radius of the geometric-optics blur disk (circle of confusion), pixels."""

    radius_px: float


@register
class PhotoDefocus(Degradation[DefocusParams]):
    """Defocus: a uniform disk PSF (circle of confusion), MTF = 2 J1(2 pi r f) / (2 pi r f).

    Fundus: wrong focus for the eye's refraction; histology: tissue out of the focal plane.
    Goodman, "Introduction to Fourier Optics", 3rd ed., 2005, ch. 6. Severity = radius / 5 px.
    """

    name = "photo_defocus"
    modalities = PHOTO
    families = ("blur",)
    RADIUS_MAX = 5.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> DefocusParams:
        return DefocusParams(draw_severity(rng, severity) * self.RADIUS_MAX)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: DefocusParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        r = params.radius_px
        if r <= 0:
            return image.clone()

        def transfer(fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
            x = 2.0 * math.pi * r * torch.sqrt(fy**2 + fx**2)
            safe = x.clamp_min(1e-6)
            jinc = 2.0 * torch.special.bessel_j1(safe) / safe
            return torch.where(x < 1e-6, torch.ones_like(x), jinc)

        return filter2d(image, transfer, int(math.ceil(r)) + 2).clamp(0, 255)

    def severities(self, params: DefocusParams) -> dict[str, float]:
        return {"blur": clip01(params.radius_px / self.RADIUS_MAX)}


@dataclass(frozen=True)
class MotionBlurParams:
    """length_px: length of the straight blur path during the exposure, pixels.
    angle_deg: direction of the path, degrees from the column (x) axis."""

    length_px: float
    angle_deg: float


@register
class PhotoMotionBlur(Degradation[MotionBlurParams]):
    """Linear motion blur (eye saccade, stage vibration): a line PSF, MTF = sinc(L f.u).

    Gonzalez & Woods, "Digital Image Processing", 4th ed., 2018, sec. 5.6 (uniform linear
    motion). Severity = length / 10 px.
    """

    name = "photo_motion_blur"
    modalities = PHOTO
    families = ("motion",)
    LENGTH_MAX = 10.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> MotionBlurParams:
        angle = uniform(rng, 0.0, 180.0)
        return MotionBlurParams(draw_severity(rng, severity) * self.LENGTH_MAX, angle)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: MotionBlurParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        length = params.length_px
        if length <= 0:
            return image.clone()
        a = math.radians(params.angle_deg)

        def transfer(fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
            return torch.sinc(length * (fx * math.cos(a) + fy * math.sin(a)))

        return filter2d(image, transfer, int(math.ceil(length)) + 2).clamp(0, 255)

    def severities(self, params: MotionBlurParams) -> dict[str, float]:
        return {"motion": clip01(params.length_px / self.LENGTH_MAX)}


@dataclass(frozen=True)
class IlluminationParams:
    """coefficients: Legendre coefficients of the log illumination field (fields.py).
    order: polynomial order (the field's smoothness)."""

    coefficients: tuple[float, ...]
    order: int


@register
class PhotoIllumination(Degradation[IlluminationParams]):
    """Uneven illumination (vignetting, off-axis flash, uneven slide lamp): a smooth factor on
    linear light. Foracchia, Grisan & Ruggeri, "Luminosity and contrast normalization in retinal
    images", Med Image Anal 9(3), 2005. Severity = sum |c| / ln 2.5."""

    name = "photo_illumination"
    modalities = PHOTO
    families = ("bias",)
    smooth_field = True
    LOG_RANGE_MAX = math.log(2.5)
    ORDER = 2

    def sample(self, rng: torch.Generator, severity: float | None = None) -> IlluminationParams:
        direction = random_coefficients(rng, self.ORDER, 1.0)
        s = draw_severity(rng, severity) * self.LOG_RANGE_MAX
        return IlluminationParams(tuple(c * s for c in direction), self.ORDER)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: IlluminationParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if not any(params.coefficients):
            return image.clone()
        h, w = image.shape[-2:]
        field = legendre_field(h, w, params.coefficients, params.order, image.device)
        return _to_stored(_to_linear(image) * field)

    def severities(self, params: IlluminationParams) -> dict[str, float]:
        return {"bias": clip01(sum(abs(c) for c in params.coefficients) / self.LOG_RANGE_MAX)}


@dataclass(frozen=True)
class PhotoExposureParams:
    """ev: exposure error in stops (log2 of the light collected / correct; -2..2)."""

    ev: float


@register
class PhotoExposure(Degradation[PhotoExposureParams]):
    """Under/over-exposure: linear light x 2^ev, clipped at the sensor's white, 8-bit stored.

    Over-exposure burns the optic disc / bright glass; under-exposure crushes dark fundus
    periphery into few levels. Severity = |ev| / 2.
    """

    name = "photo_exposure"
    modalities = PHOTO
    families = ("exposure",)
    EV_MAX = 2.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> PhotoExposureParams:
        sign = 1.0 if uniform(rng) < 0.5 else -1.0
        return PhotoExposureParams(sign * draw_severity(rng, severity) * self.EV_MAX)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: PhotoExposureParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.ev == 0:
            return image.clone()
        return torch.round(_to_stored(_to_linear(image) * 2.0**params.ev))

    def severities(self, params: PhotoExposureParams) -> dict[str, float]:
        return {"exposure": clip01(abs(params.ev) / self.EV_MAX)}


@dataclass(frozen=True)
class HazeParams:
    """transmission: fraction of scene light reaching the sensor (1 = clear media).
    airlight: stored value (0..255) of the veil the scattered light adds."""

    transmission: float
    airlight: float


@register
class PhotoHaze(Degradation[HazeParams]):
    """Haze / low contrast: I = t J + (1 - t) A (Koschmieder's scattering model).

    Fundus: cataract or vitreous opacity scatters light into a veil; histology: a dirty or
    mis-set condenser. He, Sun & Tang, "Single image haze removal using dark channel prior",
    CVPR 2009 (model, eq. 1). Severity = (1 - t) / 0.6.
    """

    name = "photo_haze"
    modalities = PHOTO
    families = ("exposure",)
    LOSS_MAX = 0.6

    def sample(self, rng: torch.Generator, severity: float | None = None) -> HazeParams:
        airlight = uniform(rng, 170.0, 235.0)
        return HazeParams(1.0 - draw_severity(rng, severity) * self.LOSS_MAX, airlight)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: HazeParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.transmission >= 1.0:
            return image.clone()
        t = params.transmission
        return (t * image + (1.0 - t) * params.airlight).float()

    def severities(self, params: HazeParams) -> dict[str, float]:
        return {"exposure": clip01((1.0 - params.transmission) / self.LOSS_MAX)}


@dataclass(frozen=True)
class SensorNoiseParams:
    """full_well_e: electrons collected at the sensor's white (fewer: noisier).
    read_noise_e: read-out noise, electrons rms."""

    full_well_e: float
    read_noise_e: float


@register
class PhotoSensorNoise(Degradation[SensorNoiseParams]):
    """Sensor noise: Poisson photon noise plus Gaussian read-out noise on linear light, per
    colour channel, then the stored gamma and 8 bits. Low light, a small sensor or a high ISO
    (gain) means fewer electrons per grey level, and the noise rises most in dark regions.

    Foi, Trimeche, Katkovnik & Egiazarian, "Practical Poissonian-Gaussian noise modeling and
    fitting for single-image raw-data", IEEE TIP 17(10), 2008. Severity s: full well
    FULL_WELL_AT_ONE / s^2 electrons (at s = 1 a mid-grey pixel collects about 40).

    Not in training chains (`in_training`): added after the shipped network was trained, so the
    photographic physics-token readers can learn that a noisier photograph is a worse one.
    """

    name = "photo_sensor_noise"
    modalities = PHOTO
    families = ("noise",)
    in_training = False
    FULL_WELL_AT_ONE = 200.0
    READ_NOISE_E = 3.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> SensorNoiseParams:
        s = draw_severity(rng, severity)
        return SensorNoiseParams(inverse_severity(s, self.FULL_WELL_AT_ONE, 2), self.READ_NOISE_E)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: SensorNoiseParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if not math.isfinite(params.full_well_e):
            return image.clone()
        return _sensor_capture(_to_linear(image), params.full_well_e, params.read_noise_e, rng)

    def severities(self, params: SensorNoiseParams) -> dict[str, float]:
        if not math.isfinite(params.full_well_e):
            return {"noise": 0.0}
        return {"noise": clip01(math.sqrt(self.FULL_WELL_AT_ONE / params.full_well_e))}


@dataclass(frozen=True)
class DimCaptureParams:
    """ev: stops of light lost before the sensor (0 = a correct exposure).
    full_well_e: electrons at the sensor's white; read_noise_e: read-out noise, electrons rms."""

    ev: float
    full_well_e: float
    read_noise_e: float


@register
class PhotoDimCapture(Degradation[DimCaptureParams]):
    """A dim fundus capture: a small pupil, a cataract or a weak flash lets 2^-ev of the light
    through, and the camera stores what it got at its usual setting. The picture is darker and,
    because the sensor collected fewer electrons, noisier (Poisson photon noise and Gaussian
    read-out noise on the dimmed linear light), in fewer 8-bit levels.

    One-sided on purpose: `photo_exposure` darkens and brightens, so a reader fitted on it alone
    sees the level tokens pulled both ways and cannot learn that a dark fundus photograph is a
    worse one (candidates F and F2, `benchmarks/results/preregistered_candidates_2026-12-06.md`).
    Noise model as `PhotoSensorNoise` (Foi et al. 2008). Severity s: ev = EV_MAX * s.

    Not in training chains (`in_training`): the fundus physics-token reader is fitted on it.
    """

    name = "photo_dim_capture"
    modalities = ("FUNDUS",)
    families = ("exposure",)
    in_training = False
    EV_MAX = 2.5
    FULL_WELL_E = 2000.0
    READ_NOISE_E = 3.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> DimCaptureParams:
        return DimCaptureParams(draw_severity(rng, severity) * self.EV_MAX, self.FULL_WELL_E,
                                self.READ_NOISE_E)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: DimCaptureParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.ev == 0:
            return image.clone()
        return _sensor_capture(_to_linear(image) * 2.0 ** -params.ev, params.full_well_e,
                               params.read_noise_e, rng)

    def severities(self, params: DimCaptureParams) -> dict[str, float]:
        return {"exposure": clip01(params.ev / self.EV_MAX)}


# Ruifrok & Johnston stain vectors (rows: haematoxylin, eosin, DAB), optical density per unit.
_RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]],
                             dtype=torch.float64)
_RGB_FROM_HED = _RGB_FROM_HED / _RGB_FROM_HED.norm(dim=1, keepdim=True)
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)


@dataclass(frozen=True)
class StainFadingParams:
    """remaining: fraction of each stain's optical density left (haematoxylin, eosin, DAB)."""

    remaining: tuple[float, float, float]


@register
class HistoStainFading(Degradation[StainFadingParams]):
    """Stain fading / under-staining: each stain's optical density scaled down (Beer-Lambert).

    OD = -log10(I / 255) is linear in stain amounts; colour deconvolution with the Ruifrok
    matrix separates them, each is scaled by its remaining fraction, and the image re-formed.
    Ruifrok & Johnston, "Quantification of histochemical staining by color deconvolution", Anal
    Quant Cytol Histol 23(4), 2001. Reported as exposure/contrast (the stain contrast falls).
    Severity = (1 - min remaining) / 0.7.
    """

    name = "histo_stain_fading"
    modalities = ("HISTO",)
    families = ("exposure",)
    LOSS_MAX = 0.7

    def sample(self, rng: torch.Generator, severity: float | None = None) -> StainFadingParams:
        shares = (uniform(rng, 0.3, 1.0), uniform(rng, 0.3, 1.0), uniform(rng, 0.3, 1.0))
        top = max(shares)
        s = draw_severity(rng, severity) * self.LOSS_MAX
        remaining = tuple(1.0 - s * v / top for v in shares)
        return StainFadingParams(remaining)  # type: ignore[arg-type]

    def apply(self, image: torch.Tensor, spacing: Spacing, params: StainFadingParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if all(r >= 1.0 for r in params.remaining) or image.dim() != 3:
            return image.clone()
        rgb = image.permute(1, 2, 0).double().clamp(1.0, 255.0)
        od = -torch.log10(rgb / 255.0)
        stains = od @ _HED_FROM_RGB.to(image.device)
        stains = stains * torch.tensor(params.remaining, dtype=torch.float64, device=image.device)
        out = 255.0 * torch.pow(10.0, -(stains @ _RGB_FROM_HED.to(image.device)))
        return out.clamp(0, 255).permute(2, 0, 1).float()

    def severities(self, params: StainFadingParams) -> dict[str, float]:
        return {"exposure": clip01((1.0 - min(params.remaining)) / self.LOSS_MAX)}
