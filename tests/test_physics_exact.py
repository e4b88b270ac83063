"""The faster paths of mediqa_cli.physics give the values the plain numpy calls gave, to the bit.

Why: the physics tokens feed trained weights, so a speed-up may not move a value by one ulp.
Each test holds a rewritten step against the expression it replaced.
"""

from __future__ import annotations

import math

import numpy as np

from mediqa_cli import iqm, physics


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _reference_spectral_slope(grey: np.ndarray) -> float:
    h, w = grey.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    which = np.digitize(np.sqrt(fy**2 + fx**2).ravel(), physics._SPECTRAL_EDGES) - 1
    edges = physics._SPECTRAL_EDGES
    valid = (which >= 0) & (which < len(edges) - 1)
    counts = np.bincount(which[valid], minlength=len(edges) - 1)
    power = np.abs(np.fft.fftshift(np.fft.fft2((grey - grey.mean()) * window))) ** 2
    sums = np.bincount(which[valid], weights=power.ravel()[valid], minlength=len(edges) - 1)
    keep = (counts > 0) & (sums > 0)
    centres = np.sqrt(edges[:-1] * edges[1:])[keep]
    return float(np.polyfit(np.log10(centres), np.log10(sums[keep] / counts[keep]), 1)[0])


def test_spectral_slope_per_shape_cache_matches_the_shifted_spectrum_in_any_order() -> None:
    """The cached bins are per shape: two shapes, in either order and again, never mix."""
    rng = np.random.default_rng(5)
    greys = {shape: rng.random(shape, dtype=np.float32) for shape in [(64, 64), (100, 77),
                                                                      (77, 100), (33, 128)]}
    expected = {shape: _reference_spectral_slope(g) for shape, g in greys.items()}
    physics._spectral_bins.cache_clear()
    for order in (list(greys), list(reversed(greys)), list(greys)):
        for shape in order:
            assert physics.spectral_slope(greys[shape]) == expected[shape], shape


def _reference_noise_sigma(image: np.ndarray, mask: np.ndarray | None) -> float:
    """noise_sigma as it was: the response of the image with the pixels outside the mask zeroed."""
    img = iqm._luminance(image)
    if img.shape[0] < 3 or img.shape[1] < 3:
        return math.nan
    valid = np.isfinite(img) if mask is None else (mask & np.isfinite(img))
    inside = iqm._interior(valid)
    if not inside.any():
        return math.nan
    x = np.where(valid, img, 0.0).astype(np.float32)
    rows = x[:-2] - 2.0 * x[1:-1] + x[2:]
    resp = rows[:, :-2] - 2.0 * rows[:, 1:-1] + rows[:, 2:]
    return float(np.median(np.abs(resp[inside])) / (iqm._IMMERKAER_NORM * iqm._MAD_TO_SIGMA))


def test_noise_sigmas_from_one_response_equal_a_masked_response_per_mask() -> None:
    rng = np.random.default_rng(2)
    grey = rng.normal(0.5, 0.1, (120, 90)).astype(np.float32)
    grey[30:60, 20:50] += 0.4
    with_nan = grey.astype(np.float64)
    with_nan[5:9, 5:40] = np.nan
    with_nan[70, 70] = np.inf
    colour = np.stack([grey, grey * 0.5, grey * 0.2], axis=-1) * 255.0
    mask = np.zeros(grey.shape, bool)
    mask[20:100, 10:80] = True
    for image in (grey, with_nan, colour, grey[:2]):
        masks = (mask[: image.shape[0]], ~mask[: image.shape[0]],
                 np.zeros(image.shape[:2], bool), None)
        got = iqm.noise_sigmas(image, masks)
        for m, value in zip(masks, got, strict=True):
            want = _reference_noise_sigma(image, m)
            assert value == want or (math.isnan(value) and math.isnan(want))
            single = iqm.noise_sigma(image, m)
            assert single == value or (math.isnan(single) and math.isnan(value))


def test_blockiness_by_taking_kept_columns_equals_deleting_the_edges() -> None:
    def reference(grey: np.ndarray, block: int = physics.BLOCK) -> float:
        ratios = []
        for diff in (np.abs(np.diff(grey, axis=1)), np.abs(np.diff(grey, axis=0)).T):
            if diff.shape[1] < 2 * block:
                continue
            edge = diff[:, block - 1::block]
            within = float(np.delete(diff, np.s_[block - 1::block], axis=1).mean())
            ratios.append(float(edge.mean()) / within if within > physics._EPS else 1.0)
        return physics._log10(float(np.mean(ratios))) if ratios else math.nan

    rng = np.random.default_rng(8)
    for shape in [(64, 64), (61, 203), (203, 17), (15, 40), (9, 9)]:
        grey = rng.random(shape, dtype=np.float32)
        grey[:, ::8] += 0.3  # a block grid to read
        got, want = physics.blockiness(grey), reference(grey)
        assert got == want or (math.isnan(got) and math.isnan(want)), shape
