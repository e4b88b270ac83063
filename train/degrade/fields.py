"""Smooth multiplicative fields: MR coil bias, uneven illumination, X-ray heel effect.

A field exp(sum_ij c_ij P_i(y) P_j(x)) of Legendre polynomials up to a low order is smooth by
construction (no frequency above the polynomial order) and positive by the exponential; this is
the bias model of TorchIO's RandomBiasField after Van Leemput et al., "Automated model-based bias
field correction of MR images of the brain", IEEE TMI 18(10), 1999. Because |P_i| <= 1 on
[-1, 1], |log field| <= sum |c_ij|: the coefficients bound the field's range without the image.
"""

from __future__ import annotations

import torch


def legendre_terms(order: int) -> list[tuple[int, int]]:
    """(i, j) degree pairs with 1 <= i + j <= order: the non-constant terms of the field."""
    return [(i, j) for i in range(order + 1) for j in range(order + 1 - i) if i + j > 0]


def _legendre(n: int, t: torch.Tensor) -> torch.Tensor:
    """Legendre polynomial P_n(t) by Bonnet's recursion."""
    p0, p1 = torch.ones_like(t), t
    if n == 0:
        return p0
    for k in range(1, n):
        p0, p1 = p1, ((2 * k + 1) * t * p1 - k * p0) / (k + 1)
    return p1


def legendre_field(h: int, w: int, coefficients: tuple[float, ...], order: int,
                   device: torch.device | None = None) -> torch.Tensor:
    """Positive smooth field (H, W) = exp(sum c_ij P_i(y) P_j(x)), y and x spanning [-1, 1]."""
    y = torch.linspace(-1.0, 1.0, h, device=device)[:, None]
    x = torch.linspace(-1.0, 1.0, w, device=device)[None, :]
    log_field = torch.zeros(h, w, device=device)
    for c, (i, j) in zip(coefficients, legendre_terms(order), strict=True):
        if c:
            log_field = log_field + c * _legendre(i, y) * _legendre(j, x)
    return torch.exp(log_field)


def random_coefficients(rng: torch.Generator, order: int, total: float) -> tuple[float, ...]:
    """Coefficients in a random direction with sum |c| = total (the log-range bound).

    Higher orders get less weight (1 / (i + j)), as measured bias fields are dominated by the
    lowest spatial frequencies.
    """
    terms = legendre_terms(order)
    raw = torch.rand(len(terms), generator=rng, device=rng.device).cpu() * 2.0 - 1.0
    raw = raw / torch.tensor([float(i + j) for i, j in terms])
    norm = float(raw.abs().sum())
    if total <= 0 or norm == 0:
        return tuple(0.0 for _ in terms)
    return tuple(float(v) for v in raw * (total / norm))
