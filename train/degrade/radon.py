"""Parallel-beam Radon transform and filtered back-projection in torch, vectorised over angles.

Forward projection rotates the (zero-padded, square) image to every angle at once with
`grid_sample` and sums along rows; back-projection samples each filtered projection at
t = x cos(theta) + y sin(theta) with `grid_sample` too. Angles are processed in chunks to bound
memory (A x D x D floats per chunk). Units: one pixel is the unit of length, so a projection of
an attenuation map in 1/pixel is a dimensionless line integral. The ramp filter is the exact
band-limited discrete one (h[0] = 1/4, h[odd n] = -1/(pi n)^2), Kak & Slaney, "Principles of
Computerized Tomographic Imaging", IEEE Press 1988, ch. 3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_CHUNK = 32


def angles(n: int, device: torch.device | None = None) -> torch.Tensor:
    """n equispaced projection angles over [0, pi) in radians."""
    return torch.arange(n, device=device, dtype=torch.float32) * (math.pi / n)


def detector_size(h: int, w: int) -> int:
    """Detector length (pixels) that sees the whole image at every angle: its diagonal."""
    return int(math.ceil(math.hypot(h, w))) + 2


def radon(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Line integrals (A, D) of an (H, W) image along parallel rays at angles `theta` (A,)."""
    h, w = image.shape
    d = detector_size(h, w)
    top, left = (d - h) // 2, (d - w) // 2
    padded = F.pad(image, (left, d - w - left, top, d - h - top))[None, None]
    out = []
    for chunk in theta.split(_CHUNK):
        c, s = torch.cos(chunk), torch.sin(chunk)
        mats = torch.stack([torch.stack([c, -s, torch.zeros_like(c)], -1),
                            torch.stack([s, c, torch.zeros_like(c)], -1)], 1)
        grid = F.affine_grid(mats, [len(chunk), 1, d, d], align_corners=False)
        rotated = F.grid_sample(padded.expand(len(chunk), 1, d, d), grid, mode="bilinear",
                                padding_mode="zeros", align_corners=False)
        out.append(rotated[:, 0].sum(dim=1))  # integrate along rows: detector along columns
    return torch.cat(out)


def ramp_filter(sinogram: torch.Tensor) -> torch.Tensor:
    """Filter each projection (row of (A, D)) with the discrete ramp, zero-padded (no wrap)."""
    d = sinogram.shape[-1]
    n = 1 << int(math.ceil(math.log2(2 * d)))
    k = torch.arange(n, device=sinogram.device)
    k = torch.where(k > n // 2, k - n, k).float()
    h = torch.zeros(n, device=sinogram.device)
    odd = k.remainder(2) == 1
    h[odd] = -1.0 / (math.pi * k[odd]) ** 2
    h[0] = 0.25
    response = torch.fft.rfft(h).real
    filtered = torch.fft.irfft(torch.fft.rfft(sinogram, n=n) * response, n=n)
    return filtered[..., :d]


def backproject(filtered: torch.Tensor, theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sum of filtered projections (A, D) smeared back over an (H, W) grid, times pi / A."""
    a_total, d = filtered.shape
    top, left = (d - h) // 2, (d - w) // 2
    centre = (d - 1) / 2.0
    y = torch.arange(h, device=filtered.device, dtype=torch.float32) + top - centre
    x = torch.arange(w, device=filtered.device, dtype=torch.float32) + left - centre
    yy, xx = (g.reshape(1, -1) for g in torch.meshgrid(y, x, indexing="ij"))
    out = torch.zeros(h * w, device=filtered.device)
    for start in range(0, a_total, _CHUNK):
        chunk = theta[start:start + _CHUNK]
        rows = filtered[start:start + _CHUNK]
        t = torch.cos(chunk)[:, None] * xx + torch.sin(chunk)[:, None] * yy
        gx = 2.0 * t / d  # detector pixel centre i sits at normalised (2i + 1) / D - 1
        gy = ((2.0 * torch.arange(len(chunk), device=t.device) + 1.0) / len(chunk) - 1.0)
        grid = torch.stack([gx, gy[:, None].expand_as(gx)], -1)[None]
        sampled = F.grid_sample(rows[None, None], grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False)
        out += sampled[0, 0].sum(0)
    return (out * (math.pi / a_total)).reshape(h, w)


def fbp(sinogram: torch.Tensor, theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Filtered back-projection of an (A, D) parallel-beam sinogram onto an (H, W) grid."""
    return backproject(ramp_filter(sinogram), theta, h, w)
