"""Modality-agnostic degradations: lower resolution, generic noise and blur, lossy codecs.

The codecs are the real ones (Pillow's libjpeg and OpenJPEG), because their artefacts (8x8
blocking and chroma subsampling for JPEG, wavelet ringing and smearing for JPEG 2000) are what
archives actually hold: DICOM allows both (transfer syntaxes 1.2.840.10008.1.2.4.50 and .91).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mediqa_cli.taxonomy import MODALITIES

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
    robust_max,
)
from .fourier import gaussian_blur


def _is_8bit_colour(image: torch.Tensor) -> bool:
    return image.dim() == 3 and float(image.min()) >= 0.0 and float(image.max()) <= 255.0


def _encode_decode(image: torch.Tensor, fmt: str, **options: object) -> torch.Tensor:
    """Round-trip through a real Pillow codec, in the codec's native sample depth.

    8-bit RGB goes as is; grey data is mapped linearly onto the codec's range (8 bits for
    baseline JPEG, 16 bits for JPEG 2000) over its own min..max and mapped back, as a lossy
    export of a raw image would.
    """
    if _is_8bit_colour(image):
        array = image.round().clamp(0, 255).permute(1, 2, 0).to(torch.uint8).cpu().numpy()
        decoded = _roundtrip(Image.fromarray(array), fmt, options)
        return torch.from_numpy(decoded.astype(np.float32)).permute(2, 0, 1).to(image.device)
    channels = image[None] if image.dim() == 2 else image
    out = []
    for channel in channels:
        lo, hi = float(channel.min()), float(channel.max())
        span = hi - lo if hi > lo else 1.0
        if fmt == "JPEG":
            levels, dtype = 255.0, np.uint8
        else:
            levels, dtype = 65535.0, np.uint16
        scaled = ((channel - lo) / span * levels).round().cpu().numpy().astype(dtype)
        decoded = _roundtrip(Image.fromarray(scaled), fmt, options)
        restored = torch.from_numpy(decoded.astype(np.float32)) / levels * span + lo
        out.append(restored.to(image.device))
    stacked = torch.stack(out)
    return stacked[0] if image.dim() == 2 else stacked


def _roundtrip(picture: Image.Image, fmt: str, options: dict[str, object]) -> np.ndarray:
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.array(decoded)


@dataclass(frozen=True)
class JpegParams:
    """quality: libjpeg quality factor (1..100; 100 = no added loss here, the codec is skipped)."""

    quality: int


@register
class Jpeg(Degradation[JpegParams]):
    """Baseline JPEG through libjpeg: 8x8 DCT quantisation (blocking, ringing, colour bleeding).

    Wallace, "The JPEG still picture compression standard", IEEE Trans Consum Electron 38(1),
    1992. Severity = (100 - quality) / 95.
    """

    name = "jpeg"
    modalities = MODALITIES
    families = ("compression",)
    stage = STORAGE

    def sample(self, rng: torch.Generator, severity: float | None = None) -> JpegParams:
        return JpegParams(int(round(100 - 95 * draw_severity(rng, severity))))

    def apply(self, image: torch.Tensor, spacing: Spacing, params: JpegParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.quality >= 100:
            return image.clone()
        return _encode_decode(image, "JPEG", quality=int(params.quality))

    def severities(self, params: JpegParams) -> dict[str, float]:
        return {"compression": clip01((100 - params.quality) / 95.0)}


@dataclass(frozen=True)
class Jpeg2000Params:
    """ratio: target compression ratio of the irreversible (9/7 wavelet) JPEG 2000 code stream
    (1 = lossless here, the codec is skipped)."""

    ratio: float


@register
class Jpeg2000(Degradation[Jpeg2000Params]):
    """Lossy JPEG 2000 through OpenJPEG: wavelet quantisation (ringing, smeared fine texture).

    Taubman & Marcellin, "JPEG2000: Image Compression Fundamentals, Standards and Practice",
    2002. Severity = ln(ratio) / ln(150).
    """

    name = "jpeg2000"
    modalities = MODALITIES
    families = ("compression",)
    stage = STORAGE
    RATIO_MAX = 150.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> Jpeg2000Params:
        return Jpeg2000Params(self.RATIO_MAX ** draw_severity(rng, severity))

    def apply(self, image: torch.Tensor, spacing: Spacing, params: Jpeg2000Params,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.ratio <= 1.0:
            return image.clone()
        levels = max(1, min(6, int(math.log2(min(image.shape[-2:]))) - 3))
        return _encode_decode(image, "JPEG2000", quality_mode="rates",
                              quality_layers=[float(params.ratio)], irreversible=True,
                              num_resolutions=levels)

    def severities(self, params: Jpeg2000Params) -> dict[str, float]:
        return {"compression": clip01(math.log(max(1.0, params.ratio)) / math.log(self.RATIO_MAX))}


@dataclass(frozen=True)
class DownsampleParams:
    """factor: acquisition pixel size / stored pixel size (>= 1): the image was acquired or
    stored this much coarser and interpolated back to its grid."""

    factor: float


@register
class Downsample(Degradation[DownsampleParams]):
    """Low resolution: area-average to a coarser grid, then bilinear interpolation back.

    What a smaller acquisition matrix or a downsized export does; the box average is the
    detector's pixel aperture, the bilinear upsampling a viewer's. Severity = (factor - 1) / 3.
    """

    name = "generic_downsample"
    modalities = MODALITIES
    families = ("blur",)
    stage = RECONSTRUCTION
    FACTOR_MAX = 4.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> DownsampleParams:
        return DownsampleParams(1.0 + draw_severity(rng, severity) * (self.FACTOR_MAX - 1.0))

    def apply(self, image: torch.Tensor, spacing: Spacing, params: DownsampleParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.factor <= 1.0:
            return image.clone()
        h, w = image.shape[-2:]
        small = (max(1, round(h / params.factor)), max(1, round(w / params.factor)))
        batch = (image[None] if image.dim() == 2 else image)[None]
        coarse = F.interpolate(batch, size=small, mode="area")
        back = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        return back[0, 0] if image.dim() == 2 else back[0]

    def severities(self, params: DownsampleParams) -> dict[str, float]:
        return {"blur": clip01((params.factor - 1.0) / (self.FACTOR_MAX - 1.0))}


@dataclass(frozen=True)
class GaussianNoiseParams:
    """sigma_rel: std of additive white Gaussian noise, as a fraction of the image's
    99th-percentile value (dimensionless)."""

    sigma_rel: float


@register
class GaussianNoise(Degradation[GaussianNoiseParams]):
    """Additive white Gaussian noise, for modalities without a specific noise model (OTHER).

    Electronic read-out noise of a digitiser. Severity = sigma_rel / 0.1.
    """

    name = "generic_noise"
    modalities = ("OTHER",)
    families = ("noise",)
    SIGMA_MAX = 0.1

    def sample(self, rng: torch.Generator, severity: float | None = None) -> GaussianNoiseParams:
        return GaussianNoiseParams(draw_severity(rng, severity) * self.SIGMA_MAX)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: GaussianNoiseParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        if params.sigma_rel <= 0:
            return image.clone()
        sigma = params.sigma_rel * robust_max(image.abs())
        return image + sigma * randn(image.shape, rng, image.device)

    def severities(self, params: GaussianNoiseParams) -> dict[str, float]:
        return {"noise": clip01(params.sigma_rel / self.SIGMA_MAX)}


@dataclass(frozen=True)
class GaussianBlurParams:
    """fwhm_px: FWHM of an isotropic Gaussian PSF, pixels."""

    fwhm_px: float


@register
class GaussianBlur(Degradation[GaussianBlurParams]):
    """Isotropic Gaussian blur, for modalities without a specific PSF model (OTHER).

    Severity = FWHM / 4 px.
    """

    name = "generic_blur"
    modalities = ("OTHER",)
    families = ("blur",)
    stage = RECONSTRUCTION
    FWHM_MAX = 4.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> GaussianBlurParams:
        return GaussianBlurParams(draw_severity(rng, severity) * self.FWHM_MAX)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: GaussianBlurParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        return gaussian_blur(image, params.fwhm_px, params.fwhm_px)

    def severities(self, params: GaussianBlurParams) -> dict[str, float]:
        return {"blur": clip01(params.fwhm_px / self.FWHM_MAX)}
