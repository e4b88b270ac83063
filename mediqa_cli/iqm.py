"""Classical image quality metrics (IQMs): cheap, per scan, computed on a foreground mask.

They fill the report before the learned model lands and stay beside it as interpretable,
model-free numbers. Following MRIQC's habit, each metric is one small pure function whose
docstring gives the formula, the direction (higher or lower is better) and the citation.
`compute_iqms` is the only entry point the report needs; `foreground_mask` is public because
the saliency and preprocessing stages can reuse it.

Numpy, with scipy.ndimage for connected components and hole filling.

Intensity conventions (see `_nonnegative`): metrics that need a physical "signal" (SNR, EFC,
FBER) work on non-negative intensities with the object bright. CT is taken in HU and shifted by
+1024 so that air is about 0 and the value is proportional to linear attenuation; values below
-1024 HU (out-of-field padding) are clipped to -1024; with no modality given, a slice with many
voxels below -500 is taken as HU. Histology (bright glass, dark stain) is inverted. Elsewhere
negative values are clipped to 0.

Non-finite voxels (NaN, +-inf) are ignored everywhere: they are outside the mask, outside the
background and excluded from every stencil that touches them.
"""

from __future__ import annotations

import hashlib
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from mediqa_cli.taxonomy import DICOM_MODALITY_MAP

IQM_KEYS: tuple[str, ...] = (
    "iqm_snr",
    "iqm_cnr",
    "iqm_efc",
    "iqm_fber",
    "iqm_sharpness",
    "iqm_noise_sigma",
    "iqm_foreground_fraction",
)

# Metrics run on a working grid whose long side is at most this; bigger images are block-averaged.
WORK_MAX_SIDE = 1024
# The mask is found on a coarser grid: the morphology is then cheap and the boundary is smooth.
MASK_MAX_SIDE = 256
# Fewer background voxels than this fraction (or count) means "no background": FBER is NaN.
MIN_BACKGROUND_FRACTION = 0.01
MIN_BACKGROUND_VOXELS = 16
# Background must lie below this fraction of the way from the image minimum to the foreground
# median; a brighter "background" is tissue, and the whole slice is then foreground.
MAX_BACKGROUND_LEVEL = 0.3
# Connected foreground components smaller than this fraction of the largest are dropped.
MIN_COMPONENT_FRACTION = 0.1

# Immerkaer's operator is the outer product of [1, -2, 1]; its squared taps sum to 36.
_IMMERKAER_NORM = 6.0
# Median of |X| for X ~ N(0, 1): turns a median absolute response into a standard deviation.
_MAD_TO_SIGMA = 0.6744897501960817
_NAN = float("nan")


# --------------------------------------------------------------------------- input handling


def _canonical_modality(modality: str | None) -> str | None:
    """Map DICOM codes (CR, PT, ...) and lower-case names onto the taxonomy's modality set."""
    if not modality:
        return None
    m = modality.strip().upper()
    return DICOM_MODALITY_MAP.get(m, m)


def _luminance(image: np.ndarray) -> np.ndarray:
    """2D float32 grey image; colour (rows, cols, 3|4) becomes Rec. 601 luma, alpha is dropped.

    Luma rather than per-channel metrics because noise, blur and ghosting show in brightness
    and one number per metric keeps grey and colour scans in the same report columns.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        rgb = a[..., :3].astype(np.float32)
        a = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    if a.ndim != 2:
        raise ValueError(
            f"IQMs take 2D slices (rows, cols) or colour (rows, cols, 3); got shape {a.shape}"
        )
    return a.astype(np.float32, copy=False)


def _looks_like_hu(finite: np.ndarray) -> bool:
    """Unlabelled slice in Hounsfield units? Many voxels below -500 happen only for CT air."""
    return finite.size > 0 and float(np.percentile(finite, 1)) <= -500.0


def _nonnegative(image: np.ndarray, modality: str | None) -> np.ndarray:
    """Intensities with a physical zero and the object bright, so energy and ratios mean something.

    CT (or, with no modality, a slice whose 1st percentile is <= -500, which only HU air gives):
    clip at -1024 HU (padding outside the reconstruction circle) and add 1024, making the value
    proportional to linear attenuation with air near 0. Histology: max - value, a
    transmission-loss (absorbance-like) scale on which glass is near 0 and stain is signal.
    Others (magnitude MR, X-ray, photos): negatives are noise or ringing around a physical zero
    and are clipped to 0; shifting instead would let one outlier move every metric.
    Non-finite voxels become NaN.
    """
    finite_pixels = np.isfinite(image)
    if finite_pixels.all():  # the common case: one float32 view, no masked copy
        out = np.asarray(image, dtype=np.float32)
    else:
        out = np.where(finite_pixels, image, np.nan).astype(np.float32)
    step = max(1, math.ceil(max(out.shape) / MASK_MAX_SIDE))  # a sample is enough to decide
    finite = out[::step, ::step][np.isfinite(out[::step, ::step])]
    if modality == "CT" or (modality is None and _looks_like_hu(finite)):
        return np.maximum(out, -1024.0) + 1024.0
    if modality == "HISTO" and finite.size:
        return np.nanmax(out) - out
    return np.maximum(out, 0.0)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Downsample by an integer factor with block averaging (NaN-aware); trims the ragged edge.

    Averaging, not decimation, so the mean intensity is kept and no aliasing is added.
    """
    if factor <= 1:
        return image
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    if h == 0 or w == 0:
        return image
    x = image[:h, :w]
    valid = np.isfinite(x)

    def block_sum(a: np.ndarray) -> np.ndarray:  # two 1-axis sums: much faster than axis=(1, 3)
        a = a.reshape(h // factor, factor, w).sum(axis=1, dtype=np.float32)
        return a.reshape(h // factor, w // factor, factor).sum(axis=2, dtype=np.float32)

    if valid.all():
        return block_sum(x) / np.float32(factor * factor)
    count = block_sum(valid.astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        return block_sum(np.where(valid, x, 0.0)) / count  # all-NaN block -> NaN


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask (used to bring the coarse mask back)."""
    if mask.shape == shape:
        return mask
    rows = np.minimum(np.arange(shape[0]) * mask.shape[0] // max(shape[0], 1), mask.shape[0] - 1)
    cols = np.minimum(np.arange(shape[1]) * mask.shape[1] // max(shape[1], 1), mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


# --------------------------------------------------------------------------- morphology


def _shift_reduce(mask: np.ndarray, op: np.ufunc, axis: int) -> np.ndarray:
    """3-tap min/max along one axis with edge replication (separable 3x3 morphology)."""
    p = np.pad(mask, [(1, 1) if ax == axis else (0, 0) for ax in range(2)], mode="edge")
    a = np.take(p, np.arange(0, mask.shape[axis]), axis=axis)
    b = np.take(p, np.arange(1, mask.shape[axis] + 1), axis=axis)
    c = np.take(p, np.arange(2, mask.shape[axis] + 2), axis=axis)
    return op(op(a, b), c)


def _erode(mask: np.ndarray) -> np.ndarray:
    return _shift_reduce(_shift_reduce(mask, np.logical_and, 0), np.logical_and, 1)


def _dilate(mask: np.ndarray) -> np.ndarray:
    return _shift_reduce(_shift_reduce(mask, np.logical_or, 0), np.logical_or, 1)


def _keep_large_components(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """Drop specks, text overlays and the CT table: components under min_fraction of the largest.

    Not only the largest, because two legs or two hands are one scan's foreground.
    4-connected components (scipy.ndimage.label with its default cross).
    """
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = np.flatnonzero(counts >= min_fraction * counts.max()) + 1
    return np.isin(labels, keep)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background regions that do not touch the image border are holes (lungs, ventricles).

    A region is background 4-connected to the border (scipy.ndimage's default cross). One
    labelling of the background, not binary_fill_holes' iterated dilation (a quarter of the
    mask's cost on a 256 px slice): the same regions, by their labels."""
    labels, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    outside = np.zeros(n + 1, dtype=bool)
    outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return mask | ~outside[labels]


def _box3(image: np.ndarray) -> np.ndarray:
    """3x3 mean filter with edge replication."""
    p = np.pad(image, 1, mode="edge")
    rows = p[:-2] + p[1:-1] + p[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9.0


def _otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu (1979) threshold maximising the between-class variance of a 1D sample.

    Otsu N. A threshold selection method from gray-level histograms. IEEE Trans SMC 9(1):62-66.
    """
    # float64: numpy builds the bin edges in the sample's dtype, and a float32 sample spanning a
    # few ulps (a flat crop of a large value) cannot hold `bins` distinct float32 edges.
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if not hi - lo > bins * np.finfo(np.float64).eps * max(abs(lo), abs(hi)):
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centers)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu0 = s0 / w0
        mu1 = (s0[-1] - s0) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return float(edges[int(np.argmax(between)) + 1])


# --------------------------------------------------------------------------- foreground mask


def foreground_mask(image: np.ndarray, modality: str | None = None) -> np.ndarray:
    """Boolean mask of the imaged object (body, head, fundus disc, tissue) in a 2D slice.

    Why a mask: SNR, CNR and sharpness mean "in the anatomy", and FBER/EFC need to know where
    the air is. Method: luma; block-average to a long side <= 256; two 3x3 box
    smoothings (noise must not cross the threshold); Otsu threshold (histogram clipped at the
    99.5th percentile so a few bright voxels cannot pull it); 3x3 opening; drop components
    smaller than 10% of the largest; fill holes; nearest-neighbour back to the input size. If the
    part below the threshold is not dark (see `_has_dark_background`), there is no background
    and the whole slice is foreground.
    CT is clipped at -1024 HU first (out-of-field padding). Histology (modality "HISTO", "SM")
    is dark stain on bright glass, so there the foreground is *below* the threshold. An image
    with no contrast is all foreground; non-finite voxels are never foreground.
    """
    lum = _luminance(image)
    canon = _canonical_modality(modality)
    if canon == "CT":
        lum = np.maximum(lum, -1024.0)
    elif canon == "HISTO":
        lum = -lum
    return _bright_foreground(lum)


def _has_dark_background(smooth: np.ndarray, mask: np.ndarray, valid: np.ndarray) -> bool:
    """Is what Otsu left out really background (air, glass, black surround) and not tissue?

    A background sits near the bottom of the range: its median, measured from the image
    minimum, must be at most MAX_BACKGROUND_LEVEL of the foreground median. Otherwise (a
    fundus crop, a full-field texture, pure noise) Otsu has only split tissue from tissue and
    the whole slice is foreground.
    """
    fg, bg = smooth[mask], smooth[valid & ~mask]
    if fg.size == 0 or bg.size == 0:
        return bool(fg.size)
    floor = float(smooth[valid].min())
    return float(np.median(bg)) - floor <= MAX_BACKGROUND_LEVEL * (float(np.median(fg)) - floor)


# The last few masks of slices up to MASK_MAX_SIDE, by content. Why: a slice that small reaches
# `_bright_foreground` unchanged from both the IQMs (`_slice_iqms`) and the whole-slice physics
# (`mediqa_cli.physics.slice_physics`), which run one after the other on the same selected
# slices in one worker; the mask (over half of the IQMs' cost there) is then computed once. Keyed
# by the pixels' bytes, so a hit is the mask those exact pixels give; larger slices reach it on
# two different grids and are never looked up.
_MASK_MEMO: OrderedDict[bytes, np.ndarray] = OrderedDict()
_MASK_MEMO_SIZE = 16
_MASK_MEMO_LOCK = threading.Lock()  # API callers may score from threads


def _bright_foreground(lum: np.ndarray) -> np.ndarray:
    """`foreground_mask` of a 2D luma image whose object is brighter than its background."""
    if lum.ndim != 2 or max(lum.shape, default=0) > MASK_MAX_SIDE:
        return _compute_bright_foreground(lum)
    pixels = np.ascontiguousarray(lum)
    digest = hashlib.blake2b(pixels.data, digest_size=16)
    digest.update(f"{pixels.dtype.str}{pixels.shape}".encode())
    key = digest.digest()
    with _MASK_MEMO_LOCK:
        mask = _MASK_MEMO.get(key)
        if mask is not None:
            _MASK_MEMO.move_to_end(key)
    if mask is None:
        mask = _compute_bright_foreground(lum)
        with _MASK_MEMO_LOCK:
            _MASK_MEMO[key] = mask
            if len(_MASK_MEMO) > _MASK_MEMO_SIZE:
                _MASK_MEMO.popitem(last=False)
    return mask.copy()  # callers own their mask; the memo's copy stays as computed


def _compute_bright_foreground(lum: np.ndarray) -> np.ndarray:
    """`_bright_foreground` itself, without the memo."""
    valid = np.isfinite(lum)
    if lum.size == 0 or not valid.any():
        return np.zeros(lum.shape, dtype=bool)
    factor = max(1, math.ceil(max(lum.shape) / MASK_MAX_SIDE))
    small = _block_mean(np.where(valid, lum, np.nan), factor)
    small_valid = np.isfinite(small)
    finite = small[small_valid]
    lo, hi = float(finite.min()), float(np.percentile(finite, 99.5))
    if not hi > lo:
        return valid.copy()
    smooth = _box3(_box3(np.where(small_valid, small, lo)))
    threshold = _otsu_threshold(np.clip(smooth[small_valid], lo, hi))
    mask = (smooth > threshold) & small_valid
    if not _has_dark_background(smooth, mask, small_valid):
        return valid.copy()
    opened = _dilate(_erode(mask)) & mask
    if opened.any():  # opening may erase a tiny object entirely: then keep it unopened
        mask = opened
    if mask.any():
        mask = _fill_holes(_keep_large_components(mask, MIN_COMPONENT_FRACTION)) & small_valid
    return _resize_mask(mask, lum.shape) & valid


# --------------------------------------------------------------------------- metrics


def _interior(mask: np.ndarray) -> np.ndarray:
    """Mask of pixels whose full 3x3 neighbourhood is inside `mask` (shape minus 2 per axis)."""
    m = mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:] & mask[1:-1, 1:-1]
    return m & mask[:-2, :-2] & mask[:-2, 2:] & mask[2:, :-2] & mask[2:, 2:]


def noise_sigma(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust standard deviation of additive white noise, in the image's own units.

    Immerkaer's operator N = [1,-2,1]^T [1,-2,1] cancels constant and linear structure, so on a
    piecewise-smooth image its response is mostly noise with std 6*sigma. Immerkaer used the mean
    absolute response; we take the median instead (MAD), which edges and texture inflate far
    less:  sigma = median(|I * N|) / (6 * 0.6745)  over pixels whose 3x3 neighbourhood lies in
    `mask` (default: all finite pixels). Lower is better. NaN if fewer than 3x3 pixels.
    It assumes white noise: noise that a CT reconstruction kernel or interpolation has made
    spatially correlated has less power at Nyquist and is underestimated (a real 512^2 CT reads
    about 1 HU), so compare values within a modality and protocol, not across them.

    Immerkaer J. Fast noise variance estimation. CVIU 64(2):300-302, 1996.
    Donoho DL, Johnstone IM. Ideal spatial adaptation by wavelet shrinkage. Biometrika 81, 1994.
    """
    img = _luminance(image)
    if img.shape[0] < 3 or img.shape[1] < 3:
        return _NAN
    valid = np.isfinite(img) if mask is None else (mask & np.isfinite(img))
    inside = _interior(valid)
    if not inside.any():
        return _NAN
    x = np.where(valid, img, 0.0).astype(np.float32)
    rows = x[:-2] - 2.0 * x[1:-1] + x[2:]
    resp = rows[:, :-2] - 2.0 * rows[:, 1:-1] + rows[:, 2:]
    return float(np.median(np.abs(resp[inside])) / (_IMMERKAER_NORM * _MAD_TO_SIGMA))


def snr(mean_foreground: float, sigma: float) -> float:
    """Signal-to-noise ratio: SNR = mu_F / sigma. Higher is better.

    mu_F is the mean foreground intensity on the non-negative scale (CT: HU + 1024) and sigma the
    robust noise estimate of `noise_sigma` inside the foreground, rather than the foreground's own
    standard deviation, which would count anatomy as noise. NaN when sigma is 0 or undefined.

    Magnotta VA, Friedman L. Measurement of signal-to-noise and contrast-to-noise in the fBIRN
    multicenter imaging study. J Digit Imaging 19(2):140-147, 2006.
    """
    return float(mean_foreground / sigma) if sigma > 0 and math.isfinite(sigma) else _NAN


def cnr(foreground_values: np.ndarray, sigma: float) -> float:
    """Contrast-to-noise ratio between the two tissue classes of the foreground. Higher is better.

    CNR = (mu_hi - mu_lo) / sigma, where hi/lo are the classes of an Otsu split of the
    foreground intensities (the GM/WM of MRIQC's CNR, without a segmentation) and sigma the
    robust noise estimate. Chosen over foreground-vs-background contrast so the column means
    the same thing for scans with no background (fundus crops, histology, cropped X-rays).
    NaN when the foreground has one level or sigma is 0.

    Magnotta & Friedman, J Digit Imaging 19(2):140-147, 2006.
    """
    if foreground_values.size < 2 or not (sigma > 0 and math.isfinite(sigma)):
        return _NAN
    t = _otsu_threshold(foreground_values)
    hi, lo = foreground_values[foreground_values > t], foreground_values[foreground_values <= t]
    if hi.size == 0 or lo.size == 0:
        return _NAN
    return float((hi.mean(dtype=np.float64) - lo.mean(dtype=np.float64)) / sigma)


def efc(values: np.ndarray) -> float:
    """Entropy focus criterion, normalised to [0, 1]. Lower is better.

    E = -sum_j (x_j / B) ln(x_j / B) with B = sqrt(sum_j x_j^2), over all N finite voxels of
    the slice (non-negative scale), divided by its value for a uniform image,
    E_max = sqrt(N) ln sqrt(N), as in MRIQC, so slices of different size compare. Ghosting,
    blur and background noise spread energy and raise it; 0 means all energy in one voxel.
    NaN for N < 2 or zero energy.

    Atkinson D et al. Automatic correction of motion artifacts in magnetic resonance images
    using an entropy focus criterion. IEEE TMI 16(6):903-910, 1997.
    """
    x = values[np.isfinite(values)].astype(np.float64)
    n = x.size
    energy = float(np.sqrt(np.sum(x * x))) if n else 0.0
    if n < 2 or energy <= 0:
        return _NAN
    p = x[x > 0] / energy
    e = -float(np.sum(p * np.log(p)))
    e_max = math.sqrt(n) * math.log(math.sqrt(n))
    return e / e_max


def fber(foreground_values: np.ndarray, background_values: np.ndarray) -> float:
    """Foreground-background energy ratio: FBER = E[|F|^2] / E[|B|^2]. Higher is better.

    On the non-negative scale (CT: HU + 1024, so air is near 0). NaN, not inf or MRIQC's -1,
    when there is no background to speak of (fewer than 1% of the voxels or 16 voxels) or the
    background has zero energy (a synthetic or skull-stripped zero fill), where the ratio says
    nothing about quality.

    Shehzad Z et al. The Preprocessed Connectomes Project Quality Assessment Protocol.
    Front Neurosci, Neuroinformatics 2015 abstract, doi:10.3389/conf.fnins.2015.91.00047.
    """
    n_total = foreground_values.size + background_values.size
    n_bg = background_values.size
    if n_bg < MIN_BACKGROUND_VOXELS or n_bg < MIN_BACKGROUND_FRACTION * n_total:
        return _NAN
    bg = float(np.mean(np.square(background_values, dtype=np.float64)))
    if not bg > 0 or foreground_values.size == 0:
        return _NAN
    return float(np.mean(np.square(foreground_values, dtype=np.float64)) / bg)


def sharpness(image: np.ndarray, mask: np.ndarray, scale: float) -> float:
    """Laplacian variance inside the foreground, made unit-free. Higher is better.

    S = Var(L) / scale^2 with L the 4-neighbour Laplacian, over pixels whose 3x3 neighbourhood
    is in the mask, and scale the foreground's 1st-99th percentile range, so S does not depend
    on units or window. Measured per pixel of the working grid (long side <= 1024). Noise raises
    it too: read it beside iqm_noise_sigma.

    Pech-Pacheco JL et al. Diatom autofocusing in brightfield microscopy: a comparative study.
    ICPR 2000, vol 3, pp 314-317.
    """
    if image.shape[0] < 3 or image.shape[1] < 3 or not (scale > 0 and math.isfinite(scale)):
        return _NAN
    inside = _interior(mask & np.isfinite(image))
    if inside.sum() < 2:
        return _NAN
    x = np.where(np.isfinite(image), image, 0.0).astype(np.float32)
    lap = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4.0 * x[1:-1, 1:-1]
    return float(np.var(lap[inside], dtype=np.float64) / scale**2)


# --------------------------------------------------------------------------- per slice, per scan


def _slice_iqms(image: np.ndarray, modality: str | None) -> dict[str, float]:
    """All IQMs of one 2D slice; see `compute_iqms`."""
    lum = _luminance(image)
    out = dict.fromkeys(IQM_KEYS, _NAN)
    if lum.size == 0 or not np.isfinite(lum).any():
        return out
    canon = _canonical_modality(modality)
    full = _nonnegative(lum, canon)
    # Big slices: intensity statistics on a strided sample (keeps each voxel's value, so means,
    # percentiles and energies keep their meaning), the mask and Laplacian on a block average.
    step = max(1, math.ceil(max(full.shape) / WORK_MAX_SIDE))
    averaged = _block_mean(full, step)
    mask_avg = _bright_foreground(averaged)  # the non-negative scale puts the object on top
    sample = full[::step, ::step]
    mask = _resize_mask(mask_avg, sample.shape) & np.isfinite(sample)
    valid = np.isfinite(sample)
    out["iqm_foreground_fraction"] = float(mask.sum() / max(valid.sum(), 1))

    fg = sample[mask]
    out["iqm_efc"] = efc(sample)
    out["iqm_fber"] = fber(fg, sample[valid & ~mask])
    if fg.size == 0:
        return out
    # Noise at native resolution (block averaging would divide it by the step), on a central
    # crop of at most WORK_MAX_SIDE^2 so huge slices stay cheap.
    r0 = max(0, (full.shape[0] - WORK_MAX_SIDE) // 2)
    c0 = max(0, (full.shape[1] - WORK_MAX_SIDE) // 2)
    crop = full[r0 : r0 + WORK_MAX_SIDE, c0 : c0 + WORK_MAX_SIDE]
    crop_mask = _resize_mask(mask_avg, full.shape)[r0 : r0 + WORK_MAX_SIDE, c0 : c0 + WORK_MAX_SIDE]
    sigma = noise_sigma(crop, crop_mask)

    p1, p99 = np.percentile(fg, [1, 99])
    scale = float(p99 - p1)
    out["iqm_snr"] = snr(float(fg.mean(dtype=np.float64)), sigma)
    out["iqm_cnr"] = cnr(fg, sigma)
    out["iqm_sharpness"] = sharpness(averaged, mask_avg, scale)
    out["iqm_noise_sigma"] = float(sigma / scale) if scale > 0 else _NAN
    return out


def compute_iqms(slices: Sequence[np.ndarray], modality: str | None = None) -> dict[str, float]:
    """Classical IQMs of one scan from a few representative 2D slices.

    Each slice is float grey (rows, cols) or colour (rows, cols, 3) (Rec. 601 luma is used), in
    physical units: CT in HU, MR/X-ray on any positive scale, photos 0..255. `modality` (taxonomy
    name or DICOM code) selects the CT HU convention and the dark-foreground rule for histology.

    Returns exactly IQM_KEYS, each the median over slices of the per-slice values (NaN slices
    ignored), so one odd slice does not move the scan value:

    - iqm_snr: mean foreground / noise sigma (higher better) - `snr`
    - iqm_cnr: Otsu two-class foreground contrast / noise sigma (higher better) - `cnr`
    - iqm_efc: entropy focus criterion in [0, 1] (lower better) - `efc`
    - iqm_fber: foreground/background mean energy, NaN without background (higher better) - `fber`
    - iqm_sharpness: Laplacian variance / foreground range^2 (higher better) - `sharpness`
    - iqm_noise_sigma: noise sigma / foreground 1-99% range (lower better) - `noise_sigma`
    - iqm_foreground_fraction: fraction of finite voxels in `foreground_mask`

    Slices with a long side over 1024 are reduced by an integer step to at most 1024: intensity
    statistics (means, percentiles, energies, EFC) use every step-th voxel, the mask and the
    sharpness use the block average, and the noise is measured at native resolution on a
    central 1024^2 crop, so SNR and noise mean the same at any size; sharpness is per working
    pixel. Never raises on constant, 1x1 or NaN/inf-containing slices:
    undefined metrics are NaN, and NaN/inf voxels are ignored.
    """
    per_slice = [_slice_iqms(s, modality) for s in slices]
    if not per_slice:
        return dict.fromkeys(IQM_KEYS, _NAN)
    result: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN, by design
        for key in IQM_KEYS:
            result[key] = float(np.nanmedian([d[key] for d in per_slice]))
    return result
