"""Parallel-beam Radon transform and filtered back-projection in torch, vectorised over angles.

Forward projection rotates the (zero-padded, square) image to every angle at once with
`grid_sample` and sums along rows; back-projection samples each filtered projection at
t = x cos(theta) + y sin(theta) with `grid_sample` too. Angles are processed in chunks to bound
memory (A x D x D floats per chunk). Units: one pixel is the unit of length, so a projection of
an attenuation map in 1/pixel is a dimensionless line integral. The ramp filter is the exact
band-limited discrete one (h[0] = 1/4, h[odd n] = -1/(pi n)^2), Kak & Slaney, "Principles of
Computerized Tomographic Imaging", IEEE Press 1988, ch. 3.

`radon`/`fbp` are the reference operators (slow: a D x D rotation per angle). The CT simulators
use the closed forms below instead, which follow from FBP being linear and, for a fixed angle set,
shift-invariant: `ramp_kernel` and `point_fbp` give the reconstruction of a point (the FBP point
spread function) at any offset without touching a sinogram, and `radial_fbp` the reconstruction
of a view-independent sinogram (a function of radius only).
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


def ramp_kernel(k: torch.Tensor) -> torch.Tensor:
    """The band-limited discrete ramp h[k] at integer offsets k (any shape, float)."""
    odd = k.remainder(2) == 1
    safe = torch.where(odd, k, torch.ones_like(k))  # no 1/0 where the kernel is zero anyway
    h = torch.where(odd, -1.0 / (math.pi * safe) ** 2, torch.zeros_like(k))
    return torch.where(k == 0, torch.full_like(k, 0.25), h)


def band_limited_ramp(t: torch.Tensor) -> torch.Tensor:
    """The continuous ramp |f| band-limited to |f| <= 1/2 cycle/pixel, at real offsets t.

    Equals ramp_kernel at integers; between them it stays band-limited, so sampling it along a
    line at any angle on the pixel grid does not alias (a linearly interpolated h would).
    """
    a = math.pi * t
    small = a.abs() < 1e-3
    safe = torch.where(small, torch.ones_like(a), a)
    h = torch.sin(safe) / (2 * safe) + (torch.cos(safe) - 1) / (2 * safe**2)
    return torch.where(small, 0.25 - a**2 / 16.0, h)


def point_fbp(n_views: int, h: int, w: int) -> torch.Tensor:
    """FBP (n equispaced views over [0, pi)) of a unit point at the origin, on offsets y in
    [0, h), x in [0, w): one quadrant of the point spread function.

    Each view back-projects the ramp kernel along a line through the point, so the PSF is
    (pi / n) sum_a h(x cos a + y sin a), h the band-limited ramp (the ideal detector response:
    the point's projection band-limited to the detector pitch). The angle set is symmetric
    under a -> pi - a and h is even, so the PSF is even in x and in y: this quadrant defines it.
    """
    y = torch.arange(h, dtype=torch.float32)[:, None, None]
    x = torch.arange(w, dtype=torch.float32)[None, :, None]
    out = torch.zeros(h, w)
    for chunk in angles(n_views).split(_CHUNK):
        out += band_limited_ramp(x * torch.cos(chunk) + y * torch.sin(chunk)).sum(-1)
    return out * (math.pi / n_views)


def radial_fbp(row: torch.Tensor, n_views: int, radius: torch.Tensor,
               step: float = 0.25) -> torch.Tensor:
    """FBP of a sinogram whose every view is `row` (D,), centred on (D - 1) / 2, at `radius`.

    Such a sinogram reconstructs to a function of radius only (exactly so for continuous
    angles), so it is computed once on a radial grid of `step` pixels and interpolated: R x A
    samples instead of H x W x A.
    """
    d = row.shape[-1]
    filtered = ramp_filter(row[None])[0]
    grid = torch.arange(0.0, float(radius.max()) + 2 * step, step, device=row.device)
    theta = angles(n_views, row.device)
    t = grid[:, None] * torch.cos(theta)[None] + (d - 1) / 2.0
    lo = t.floor().clamp(0, d - 1)
    frac = t - lo
    i0 = lo.long()
    i1 = (i0 + 1).clamp_max(d - 1)
    profile = (filtered[i0] * (1 - frac) + filtered[i1] * frac).sum(-1) * (math.pi / n_views)
    pos = radius / step
    j = pos.floor().long().clamp_max(len(grid) - 2)
    f = pos - j
    return profile[j] * (1 - f) + profile[j + 1] * f


def ramp_filter(sinogram: torch.Tensor) -> torch.Tensor:
    """Filter each projection (row of (A, D)) with the discrete ramp, zero-padded (no wrap)."""
    d = sinogram.shape[-1]
    n = 1 << int(math.ceil(math.log2(2 * d)))
    k = torch.arange(n, device=sinogram.device)
    k = torch.where(k > n // 2, k - n, k).float()
    response = torch.fft.rfft(ramp_kernel(k)).real
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
