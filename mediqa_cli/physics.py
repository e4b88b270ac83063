"""Whole-slice physics measures, computed at native resolution and fed to the network as tokens.

Why: the patch tokens see 16 px windows of a slice scaled to [0, 1], and what makes the classical
measures (FBER, EFC, PIQE, BRISQUE) work is invisible from there: the noise floor in the air,
energy spread by ghosts across the background, a smooth bias over the whole field, the 8x8 grid
of a JPEG, clipped or darkened exposure that the robust scaling undoes. These numbers are
measured once per slice on the image in its own units, before any scaling or patch selection,
and the network learns when each of them matters (`mediqa_cli.model.layers.PhysicsTokens`).

Every value is unit-free (ratios, logs, fractions), so a 12-bit DICOM, an 8-bit PNG and a CT in
HU land on one scale. An undefined value (no background, a grey image's chroma, the bit depth of
data with negative values) is NaN; the network has a "missing" embedding for it. The names and
their order are part of the weights' format: append, never reorder.

No measure may depend on whether the pixels are stored as integers or floats: the same slice read
from a PNG and after a float resampling must land on the same values. Training sees resampled
float slices, scoring reads integer files, and a measure that tells the two apart (distinct
values, "integer data only") teaches the network that integer pixels mean a clean image.

Cost: local statistics (noise, JPEG blocks, MSCN, spectrum) on a native-resolution central crop
of at most CROP_SIDE^2 px, global ones (mask, bias, ghosting) on a block average of the slice;
about 45 ms for a 512^2 slice on one core (`benchmarks/end_to_end.py` shows the share per run).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

from mediqa_cli.iqm import (
    _bright_foreground,
    _canonical_modality,
    _luminance,
    _nonnegative,
    cnr,
    efc,
    fber,
    noise_sigma,
)

PHYSICS_FEATURES: tuple[str, ...] = (
    "noise",  # log10 robust noise sigma (Immerkaer MAD) in the object, / robust range
    "noise_background",  # the same in the background (NaN without one)
    "snr",  # log10 mean object intensity / noise sigma
    "cnr",  # log10 contrast of the object's two Otsu classes / noise sigma
    "fber",  # log10 foreground-background energy ratio
    "efc",  # entropy focus criterion, 0..1
    "sharpness",  # log10 variance of the Laplacian in the object / range^2
    "spectral_slope",  # slope of log power vs log frequency, 0.05-0.45 cycles/px
    "blockiness",  # log10 step across 8 px block edges / step inside blocks
    "mscn_variance",  # log10 variance of mean-subtracted contrast-normalised coefficients
    "mscn_kurtosis",  # signed log1p of their excess kurtosis
    "mscn_neighbour",  # mean product of horizontally adjacent coefficients, -1..1
    "bias",  # log10 coefficient of variation of the object's smooth intensity field
    "ghosting",  # log10 background level beside the object / in the corners
    "background_level",  # log10 background mean / object mean
    "clip_low",  # log10 fraction of pixels within CLIP_TOLERANCE of the range of the minimum
    "clip_high",  # log10 fraction of pixels within CLIP_TOLERANCE of the range of the maximum
    "display_mean",  # mean object intensity / full scale of the bit depth (NaN below zero)
    "headroom",  # 99.5th percentile / full scale of the bit depth (NaN below zero)
    "mean_level",  # mean object intensity on the robust 1-99.5 % range
    "foreground_fraction",  # object share of the slice
    "chroma",  # mean colourfulness (max - min channel) / 255 (NaN for grey)
)
N_PHYSICS = len(PHYSICS_FEATURES)

CROP_SIDE = 512  # native-resolution crop for the local statistics
GLOBAL_SIDE = 256  # block-averaged long side for the mask and the smooth-field measures
CLIP_TOLERANCE = 0.002  # of the slice's range: below one level of 8-bit data, a few of 12-bit
BLOCK = 8  # JPEG / MPEG transform block
MSCN_SIGMA = 7.0 / 6.0  # BRISQUE's Gaussian window
_SPECTRAL_EDGES = np.geomspace(0.05, 0.45, 13)  # radial frequency bins, cycles / px
_EPS = 1e-6


def _log10(value: float, floor: float = 1e-6) -> float:
    return math.log10(max(value, floor)) if math.isfinite(value) else math.nan


def _block_average(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks (ragged edge trimmed); NaN-free input."""
    if factor <= 1:
        return image
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    if h == 0 or w == 0:
        return image
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def _strided(image: np.ndarray, side: int) -> np.ndarray:
    """Every k-th pixel so that at most side x side remain: values kept, for percentiles."""
    return image[:: max(1, image.shape[0] // side), :: max(1, image.shape[1] // side)]


def _upsample(mask: np.ndarray, rows: slice, cols: slice, factor: int) -> np.ndarray:
    """Nearest-neighbour map of a block-averaged mask back onto a window of the full grid
    (only the window: a full-size map of a 2048^2 radiograph costs more than its crop's use)."""
    r = np.minimum(np.arange(rows.start, rows.stop) // factor, mask.shape[0] - 1)
    c = np.minimum(np.arange(cols.start, cols.stop) // factor, mask.shape[1] - 1)
    return mask[r[:, None], c[None, :]]


def _central_crop(image: np.ndarray, side: int) -> tuple[slice, slice]:
    """The central side x side window, its corner on the BLOCK grid of the slice: a JPEG's 8x8
    DCT edges are anchored at the file's top-left pixel, and `blockiness` reads them at the
    crop's. Unaligned, a photograph above 512 px showed its block edges as steps inside blocks,
    so its blockiness fell as the JPEG quality fell (RESULTS.md, candidate BA)."""
    r0 = max(0, (image.shape[0] - side) // 2) // BLOCK * BLOCK
    c0 = max(0, (image.shape[1] - side) // 2) // BLOCK * BLOCK
    return (slice(r0, min(r0 + side, image.shape[0])),
            slice(c0, min(c0 + side, image.shape[1])))


def blockiness(grey: np.ndarray, block: int = BLOCK) -> float:
    """log10 of the mean absolute step across block edges over the mean step inside blocks.

    About 0 for an image without a block grid; a JPEG at low quality puts its 8x8 DCT edges on
    the grid anchored at the top-left pixel, where the step grows (Wang, Bovik & Evans, ICIP
    2000, in spirit). NaN for slices narrower than two blocks.
    """
    ratios = []
    for diff in (np.abs(np.diff(grey, axis=1)), np.abs(np.diff(grey, axis=0)).T):
        if diff.shape[1] < 2 * block:
            continue
        edge = diff[:, block - 1::block]
        inside = np.delete(diff, np.s_[block - 1::block], axis=1)
        within = float(inside.mean())
        ratios.append(float(edge.mean()) / within if within > _EPS else 1.0)
    return _log10(float(np.mean(ratios))) if ratios else math.nan


@functools.lru_cache(maxsize=16)
def _spectral_bins(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(window, bin of each frequency, mask of binned ones, pixels per bin) for an h x w crop:
    a volume's slices share one shape, so these are computed once, not per slice."""
    window = np.outer(np.hanning(h), np.hanning(w))
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    which = np.digitize(radius.ravel(), _SPECTRAL_EDGES) - 1
    valid = (which >= 0) & (which < len(_SPECTRAL_EDGES) - 1)
    counts = np.bincount(which[valid], minlength=len(_SPECTRAL_EDGES) - 1)
    for array in (window, which, valid, counts):
        array.flags.writeable = False  # shared between calls
    return window, which, valid, counts


def spectral_slope(grey: np.ndarray) -> float:
    """Slope of the radially averaged log power spectrum over log frequency (0.05-0.45 cyc/px).

    Natural and medical images fall near -2 to -3; blur steepens the slope, white noise and
    blocking flatten it. Hann-windowed so the crop's edges do not add a cross of leakage.
    """
    h, w = grey.shape
    if min(h, w) < 32:
        return math.nan
    window, which, valid, counts = _spectral_bins(h, w)
    power = np.abs(np.fft.fftshift(np.fft.fft2((grey - grey.mean()) * window))) ** 2
    edges = _SPECTRAL_EDGES
    sums = np.bincount(which[valid], weights=power.ravel()[valid], minlength=len(edges) - 1)
    keep = (counts > 0) & (sums > 0)
    if keep.sum() < 4:
        return math.nan
    centres = np.sqrt(edges[:-1] * edges[1:])[keep]
    return float(np.polyfit(np.log10(centres), np.log10(sums[keep] / counts[keep]), 1)[0])


def excess_kurtosis(values: np.ndarray) -> float:
    """Fisher's excess kurtosis, biased (m4 / m2^2 - 3), NaN for constant values.

    Why not scipy.stats.kurtosis: importing scipy.stats costs about half a second of every
    `mediqa score` start-up, for one line. The moments are taken as scipy takes them, so the
    value is the same to the last bit (tests/test_speed_equivalence.py).
    """
    centred = values.ravel() - values.mean()
    square = centred ** 2
    m2 = float(square.mean())
    return float((square ** 2).mean() / m2 ** 2.0 - 3.0) if m2 > 0 else math.nan


def mscn_statistics(grey: np.ndarray) -> tuple[float, float, float]:
    """(log10 variance, signed log1p excess kurtosis, neighbour product) of the MSCN field.

    Mean-subtracted contrast-normalised coefficients (Mittal, Moorthy & Bovik, IEEE TIP 2012:
    BRISQUE) are near-Gaussian with unit-ish variance on pristine images; noise, blur and
    compression move their spread, tails and neighbour correlation in known directions.
    """
    mu = ndimage.gaussian_filter(grey, MSCN_SIGMA)
    sd = np.sqrt(np.abs(ndimage.gaussian_filter(grey * grey, MSCN_SIGMA) - mu * mu))
    coeff = (grey - mu) / (sd + 1.0 / 255.0)
    k = excess_kurtosis(coeff)
    pair = float(np.mean(coeff[:, :-1] * coeff[:, 1:]) / max(float(coeff.var()), _EPS))
    return _log10(float(coeff.var())), math.copysign(math.log1p(abs(k)), k), pair


def smooth_bias(image: np.ndarray, mask: np.ndarray) -> float:
    """log10 coefficient of variation of the object's intensity smoothed over 1/8 of the field.

    Normalised convolution (smooth(image x mask) / smooth(mask)), so the object's edge does not
    count as shading; measured in the eroded object. A coil bias field or uneven illumination
    raises it; anatomy, averaged over such a wide window, barely does.
    """
    step = max(1, math.ceil(max(mask.shape) / 64))  # the field is smooth: 64 px carry it
    weight = _block_average(mask.astype(np.float64), step)
    image = _block_average(np.where(mask, image, 0.0), step)
    inner = ndimage.binary_erosion(weight > 0.99, iterations=max(1, min(weight.shape) // 32))
    if inner.sum() < 16:
        return math.nan
    sigma = max(weight.shape) / 8.0
    field = ndimage.gaussian_filter(image, sigma) / np.maximum(
        ndimage.gaussian_filter(weight, sigma), _EPS)
    values = field[inner]
    mean = float(values.mean())
    return _log10(float(values.std()) / mean) if mean > _EPS else math.nan


def ghosting(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(ghosting, background level) from the background around the object's bounding box.

    MR ghosts repeat the object along the phase-encode axis, so they land in the background
    bands that share the object's rows or columns, not in the corners. Ghosting is log10 of the
    brighter band's mean over the corners' mean; background level is log10 of the background
    mean over the object mean. NaN where there is too little background.
    """
    background = ~mask
    if background.sum() < 0.01 * mask.size or not mask.any():
        return math.nan, math.nan
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    in_rows = np.zeros(mask.shape[0], bool)
    in_rows[rows[0]:rows[-1] + 1] = True
    in_cols = np.zeros(mask.shape[1], bool)
    in_cols[cols[0]:cols[-1] + 1] = True
    row_band = background & in_rows[:, None] & ~in_cols[None, :]
    col_band = background & in_cols[None, :] & ~in_rows[:, None]
    corners = background & ~in_rows[:, None] & ~in_cols[None, :]
    fg_mean = float(image[mask].mean())
    level = _log10(float(image[background].mean()) / fg_mean) if fg_mean > _EPS else math.nan
    floor = 1e-3 * max(fg_mean, _EPS)
    bands = [float(image[b].mean()) for b in (row_band, col_band) if b.sum() >= 16]
    base = float(image[corners].mean()) if corners.sum() >= 16 else float(
        np.percentile(image[background], 25))
    if not bands:
        return math.nan, level
    return _log10((max(bands) + floor) / (base + floor)), level


def full_scale(raw: np.ndarray) -> float:
    """Full scale of the smallest unsigned bit depth (8 at least) that holds non-negative data,
    NaN for data with negative values (CT in HU).

    Why: an under-exposed radiograph, a darkened photograph or an ultrasound with too little gain
    uses a fraction of its stored range, and the robust scaling of every other measure hides
    that. Integer and float pixels are treated alike (module docstring).
    """
    if raw.size == 0 or float(raw.min()) < 0:
        return math.nan
    top = float(raw.max())
    bits = max(8, math.ceil(math.log2(top + 1.0))) if top > 0 else 8
    return 2.0**bits - 1.0


def slice_physics(image: np.ndarray, modality: str | None = None) -> np.ndarray:
    """The PHYSICS_FEATURES of one slice, as float32 (N_PHYSICS,), NaN where undefined.

    image: (rows, cols) in the reader's physical units (CT in HU) or (rows, cols, 3) colour
    0..255, as `Scan.read_slice` returns it. modality: taxonomy name or None.
    """
    out = np.full(N_PHYSICS, np.nan, dtype=np.float32)
    arr = np.asarray(image)
    lum = _luminance(arr)
    finite = np.isfinite(lum)
    if lum.size == 0 or min(lum.shape) < 4 or not finite.any():
        return out
    canon = _canonical_modality(modality)
    values: dict[str, float] = {}
    raw = lum if finite.all() else np.where(finite, lum, np.nan)
    lo_raw, hi_raw = float(np.nanmin(raw)), float(np.nanmax(raw))
    sample = _strided(raw, 512)
    sample = sample[np.isfinite(sample)]
    # A tolerance, not exact ties: a resampled or dithered float slice clips as much as the
    # integer file it came from.
    tol = CLIP_TOLERANCE * (hi_raw - lo_raw)
    values["clip_low"] = _log10(float(np.mean(sample <= lo_raw + tol)), 1e-5)
    values["clip_high"] = _log10(float(np.mean(sample >= hi_raw - tol)), 1e-5)
    scale = full_scale(sample)
    values["headroom"] = float(np.percentile(sample, 99.5)) / scale
    if arr.ndim == 3 and arr.shape[-1] >= 3:
        red, green, blue = (arr[..., k].astype(np.float32) for k in range(3))
        # Element-wise over three planes: a reduction along the interleaved last axis is 6x slower.
        spread = (np.maximum(np.maximum(red, green), blue)
                  - np.minimum(np.minimum(red, green), blue))
        values["chroma"] = float(np.nanmean(spread)) / 255.0

    full = _nonnegative(lum, canon)  # a fresh array, non-finite pixels NaN
    full[np.isnan(full)] = 0.0
    lo, hi = (float(v) for v in np.percentile(_strided(full, 512), [1, 99.5]))
    span = hi - lo if hi - lo > _EPS * max(1.0, abs(hi)) else 1.0

    factor = max(1, math.ceil(max(full.shape) / GLOBAL_SIDE))
    small = _block_average(full, factor)
    mask = _bright_foreground(small)
    if not mask.any():
        mask = np.ones_like(mask)
    fg, bg = small[mask], small[~mask]
    values["foreground_fraction"] = float(mask.mean())
    values["fber"] = _log10(fber(fg, bg))
    values["efc"] = efc(small)
    values["bias"] = smooth_bias(small, mask)
    values["ghosting"], values["background_level"] = ghosting(small, mask)
    values["mean_level"] = float((fg.mean() - lo) / span)
    values["display_mean"] = float(fg.mean()) / scale

    rows, cols = _central_crop(full, CROP_SIDE)
    grey = (full[rows, cols] - lo) / span
    crop_mask = _upsample(mask, rows, cols, factor)
    sigma = noise_sigma(grey, crop_mask)
    values["noise"] = _log10(sigma)
    if (~crop_mask).sum() >= 64:
        values["noise_background"] = _log10(noise_sigma(grey, ~crop_mask))
    values["snr"] = _log10(float(fg.mean()) / (sigma * span)) if sigma > 0 else math.nan
    grey_fg = grey[crop_mask]
    values["cnr"] = _log10(abs(cnr(grey_fg, sigma))) if grey_fg.size > 1 else math.nan
    inner = crop_mask[1:-1, 1:-1] & crop_mask[:-2, 1:-1] & crop_mask[2:, 1:-1]
    lap = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
           - 4.0 * grey[1:-1, 1:-1])
    values["sharpness"] = _log10(float(lap[inner].var())) if inner.sum() > 16 else math.nan
    values["spectral_slope"] = spectral_slope(grey)
    values["blockiness"] = blockiness(grey)
    if min(grey.shape) >= 8:
        values["mscn_variance"], values["mscn_kurtosis"], values["mscn_neighbour"] = (
            mscn_statistics(np.clip(grey, -0.5, 1.5)))
    for i, name in enumerate(PHYSICS_FEATURES):
        v = values.get(name, math.nan)
        out[i] = v if v is not None and math.isfinite(v) else np.nan
    return out


__all__ = [
    "N_PHYSICS",
    "PHYSICS_FEATURES",
    "blockiness",
    "ghosting",
    "mscn_statistics",
    "slice_physics",
    "smooth_bias",
    "spectral_slope",
]
