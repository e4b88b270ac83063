"""Centred, orthonormal 2D Fourier helpers shared by the k-space and frequency-domain simulators.

`fft2c`/`ifft2c` put the k-space centre (DC) at index (H//2, W//2) and use the orthonormal
scaling, so white noise of standard deviation sigma added in k-space is white noise of the same
sigma in the image: that is what makes MR thermal noise simulated in k-space Rician-exact.
`filter2d` applies a real transfer function (an MTF) with reflect padding, so blurs do not wrap
around the borders as a bare circular FFT would.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

_DIMS = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two dims (image -> k-space)."""
    shifted = torch.fft.ifftshift(image, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(shifted, norm="ortho"), dim=_DIMS)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse 2D FFT (k-space -> complex image)."""
    shifted = torch.fft.ifftshift(kspace, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, norm="ortho"), dim=_DIMS)


def centred_frequencies(h: int, w: int, device: torch.device | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial frequencies (cycles/pixel, in [-0.5, 0.5)) of `fft2c` output, as (H,1), (1,W)."""
    fy = torch.fft.fftshift(torch.fft.fftfreq(h, device=device))[:, None]
    fx = torch.fft.fftshift(torch.fft.fftfreq(w, device=device))[None, :]
    return fy, fx


Transfer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def filter2d(image: torch.Tensor, transfer: Transfer, pad: int) -> torch.Tensor:
    """Multiply the spectrum of a real image (..., H, W) by transfer(fy, fx) in cycles/pixel.

    The image is reflect-padded by `pad` pixels first (the PSF's reach), so edges see a mirrored
    continuation rather than the opposite border.
    """
    h, w = image.shape[-2:]
    py, px = min(pad, h - 1), min(pad, w - 1)
    flat = image.reshape(-1, h, w)
    if py or px:
        flat = F.pad(flat, (px, px, py, py), mode="reflect")
    hp, wp = flat.shape[-2:]
    fy = torch.fft.fftfreq(hp, device=image.device)[:, None]
    fx = torch.fft.rfftfreq(wp, device=image.device)[None, :]
    spectrum = torch.fft.rfft2(flat) * transfer(fy, fx).to(flat.dtype)
    out = torch.fft.irfft2(spectrum, s=(hp, wp))[..., py:py + h, px:px + w]
    return out.reshape(image.shape).contiguous()


def gaussian_mtf(fwhm_y_px: float, fwhm_x_px: float) -> Transfer:
    """MTF of a Gaussian PSF with the given FWHM (pixels) along rows and columns."""
    k = 2.0 * math.pi**2 / (8.0 * math.log(2.0))  # sigma^2 = fwhm^2 / (8 ln 2)

    def transfer(fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return torch.exp(-k * ((fwhm_y_px * fy) ** 2 + (fwhm_x_px * fx) ** 2))

    return transfer


def gaussian_blur(image: torch.Tensor, fwhm_y_px: float, fwhm_x_px: float) -> torch.Tensor:
    """Gaussian blur by FWHM in pixels (identity when both are 0)."""
    if fwhm_y_px <= 0 and fwhm_x_px <= 0:
        return image.clone()
    pad = int(math.ceil(1.5 * max(fwhm_y_px, fwhm_x_px))) + 1
    return filter2d(image, gaussian_mtf(fwhm_y_px, fwhm_x_px), pad)
