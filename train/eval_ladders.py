"""Evaluation ladders made by code the model never trains on.

Why: a model pre-trained on our own simulators can learn their fingerprints (a kernel shape, a
noise table, the way a ghost is drawn) instead of the quality they stand for, and a ladder drawn
by the same simulators would reward exactly that. Every family here calls another project's
implementation — TorchIO for MR k-space faults, noise and bias, scikit-image's `radon`/`iradon` with
Poisson counts for low-dose and sparse-view CT, Pillow for JPEG, defocus and exposure,
scikit-image/scipy for speckle, quantum noise, scatter and blur — so a rank they get right is a
rank of the artefact, not of our code.

A ladder is the clean image plus the same fault at five increasing levels (one random draw per
ladder, reused at every level, so only the strength changes). Images are float32 arrays in the
reader's layout and units: (H, W) grey in physical units (HU for CT), or (H, W, 3) colour 0..255.
Needs the `eval` extra (torchio).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LEVELS = 5


@dataclass(frozen=True)
class Family:
    """One fault, at five strengths, by one named implementation."""

    name: str
    implementation: str
    strengths: tuple[float, ...]  # one per level, increasing harm
    apply: Callable[[np.ndarray, float, tuple[float, float], int], np.ndarray]


def _unit(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Scale to 0..1 by the image's own robust range (kept to map back)."""
    low, high = np.percentile(image, [0.5, 99.5])
    high = max(high, low + 1e-6)
    return (image - low) / (high - low), float(low), float(high)


def _back(unit: np.ndarray, low: float, high: float) -> np.ndarray:
    return (unit * (high - low) + low).astype(np.float32)


def _grey_or_colour(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Apply a 2D function to a grey image, or to each channel of a colour one."""
    def run(image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            return np.stack([fn(image[..., c]) for c in range(image.shape[-1])], axis=-1)
        return fn(image)
    return run


# --- Pillow: JPEG, defocus, exposure, fading ------------------------------------------------


def _to_pil(image: np.ndarray):  # noqa: ANN202 - PIL.Image
    """8-bit Pillow image; grey images in physical units are windowed by their robust range."""
    from PIL import Image

    if image.ndim == 3:
        return Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8)), None
    unit, low, high = _unit(image)
    return Image.fromarray((np.clip(unit, 0, 1) * 255).round().astype(np.uint8)), (low, high)


def _from_pil(picture, window: tuple[float, float] | None) -> np.ndarray:  # noqa: ANN001
    array = np.asarray(picture, dtype=np.float32)
    if window is None:
        return array
    return _back(array / 255.0, *window)


def jpeg(image: np.ndarray, quality: float, spacing: tuple[float, float], seed: int) -> np.ndarray:
    picture, window = _to_pil(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=int(quality))
    from PIL import Image

    return _from_pil(Image.open(buffer), window)


def defocus(image: np.ndarray, radius_per_kpx: float, spacing: tuple[float, float],
            seed: int) -> np.ndarray:
    """Pillow's Gaussian blur, radius scaled to the image (a 1000-px photograph gets the radius)."""
    from PIL import ImageFilter

    picture, window = _to_pil(image)
    radius = radius_per_kpx * max(image.shape[:2]) / 1000.0
    return _from_pil(picture.filter(ImageFilter.GaussianBlur(radius)), window)


def darken(image: np.ndarray, factor: float, spacing: tuple[float, float],
           seed: int) -> np.ndarray:
    """Pillow ImageEnhance.Brightness on the stored pixels (under-gain, under-exposure)."""
    from PIL import Image, ImageEnhance

    if image.ndim == 3:
        picture = Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8))
        return np.asarray(ImageEnhance.Brightness(picture).enhance(factor), dtype=np.float32)
    return (image * factor).astype(np.float32)  # grey raw units: gain is a multiplication


def fade(image: np.ndarray, factor: float, spacing: tuple[float, float], seed: int) -> np.ndarray:
    """Pillow ImageEnhance.Contrast then Color: a faded stain or a washed-out photograph."""
    from PIL import ImageEnhance

    picture, window = _to_pil(image)
    picture = ImageEnhance.Contrast(picture).enhance(factor)
    if image.ndim == 3:
        picture = ImageEnhance.Color(picture).enhance(factor)
    return _from_pil(picture, window)


# --- scikit-image / scipy: noise, speckle, blur, scatter, exposure -----------------------------


def gaussian_noise(image: np.ndarray, variance: float, spacing: tuple[float, float],
                   seed: int) -> np.ndarray:
    from skimage.util import random_noise

    if image.ndim == 3:
        return (random_noise(np.clip(image, 0, 255) / 255.0, mode="gaussian", var=variance,
                             rng=seed) * 255.0).astype(np.float32)
    unit, low, high = _unit(image)
    return _back(random_noise(unit, mode="gaussian", var=variance, rng=seed, clip=False),
                 low, high)


def speckle(image: np.ndarray, variance: float, spacing: tuple[float, float],
            seed: int) -> np.ndarray:
    """scikit-image multiplicative speckle (ultrasound)."""
    from skimage.util import random_noise

    scale = 255.0 if image.max() > 1.5 else 1.0
    noisy = random_noise(np.clip(image, 0, None) / scale, mode="speckle", var=variance, rng=seed,
                         clip=False)
    return (np.clip(noisy, 0, image.max() / scale) * scale).astype(np.float32)


def poisson_counts(image: np.ndarray, counts: float, spacing: tuple[float, float],
                   seed: int) -> np.ndarray:
    """Quantum noise: the robust-range image as `counts` photons at full signal (X-ray, NM)."""
    unit, low, high = _unit(image)
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(np.clip(unit, 0, None) * counts) / counts
    return _back(noisy, low, high)


def gaussian_blur_mm(image: np.ndarray, sigma_mm: float, spacing: tuple[float, float],
                     seed: int) -> np.ndarray:
    """scipy.ndimage Gaussian blur with a width in mm (1 mm pixels where spacing is unknown)."""
    from scipy.ndimage import gaussian_filter

    rows, cols = (s if np.isfinite(s) and s > 0 else 1.0 for s in spacing)
    sigma = (sigma_mm / rows, sigma_mm / cols) + ((0.0,) if image.ndim == 3 else ())
    return gaussian_filter(image.astype(np.float32), sigma=sigma)


def scatter(image: np.ndarray, fraction: float, spacing: tuple[float, float],
            seed: int) -> np.ndarray:
    """A scatter veil: part of the signal replaced by a very wide blur of itself (scipy)."""
    from scipy.ndimage import gaussian_filter

    veil = gaussian_filter(image.astype(np.float32), sigma=max(image.shape[:2]) / 8.0)
    return ((1.0 - fraction) * image + fraction * veil).astype(np.float32)


def overexpose(image: np.ndarray, gain: float, spacing: tuple[float, float],
               seed: int) -> np.ndarray:
    """Over-exposure: gain about the dark end, clipped where the detector saturates."""
    unit, low, high = _unit(image)
    return _back(np.clip(unit * gain, None, 1.0), low, high)


# --- scikit-image radon/iradon: low-dose and sparse-view CT ------------------------------------

MU_WATER_PER_MM = 0.019


_SINOGRAM_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, float]] = {}


def _sinogram(mu: np.ndarray, pixel: float, angles: int) -> tuple[np.ndarray, np.ndarray]:
    """Line integrals of `mu` (1/mm), cached for the last image: a ladder reuses one sinogram."""
    from skimage.transform import radon

    key = (hash(mu.tobytes()), mu.shape, angles, pixel)
    if key not in _SINOGRAM_CACHE:
        _SINOGRAM_CACHE.clear()
        theta = np.linspace(0.0, 180.0, angles, endpoint=False)
        _SINOGRAM_CACHE[key] = (radon(mu, theta=theta, circle=False) * pixel, theta, pixel)
    sinogram, theta, _ = _SINOGRAM_CACHE[key]
    return sinogram, theta


def _ct_reconstruct(image: np.ndarray, spacing: tuple[float, float], angles: int,
                    photons: float | None, seed: int) -> np.ndarray:
    """HU -> attenuation -> sinogram (+ Poisson counts) -> filtered back-projection -> HU.

    Pixels outside the scanner's field of view (stored below -1024 HU) are put back as they
    were: they are padding, not anatomy, and no detector sees them.
    """
    from skimage.transform import iradon

    pixel = spacing[1] if np.isfinite(spacing[1]) and spacing[1] > 0 else 0.7
    mu = np.clip(MU_WATER_PER_MM * (1.0 + image / 1000.0), 0, None).astype(np.float32)
    side = max(image.shape)
    padded = np.zeros((side, side), np.float32)
    top, left = (side - image.shape[0]) // 2, (side - image.shape[1]) // 2
    padded[top:top + image.shape[0], left:left + image.shape[1]] = mu
    sinogram, theta = _sinogram(padded, pixel, angles)
    if photons is not None:
        rng = np.random.default_rng(seed)
        counts = rng.poisson(photons * np.exp(-sinogram))
        sinogram = -np.log(np.maximum(counts, 1) / photons)
    mu_back = iradon(sinogram / pixel, theta=theta, circle=False, filter_name="ramp",
                     output_size=side)
    mu_back = mu_back[top:top + image.shape[0], left:left + image.shape[1]]
    out = (1000.0 * (mu_back / MU_WATER_PER_MM - 1.0)).astype(np.float32)
    outside = image < -1024.0
    out[outside] = image[outside]
    return out


def ct_low_dose(image: np.ndarray, photons: float, spacing: tuple[float, float],
                seed: int) -> np.ndarray:
    """Poisson counts on the sinogram (skimage radon), filtered back-projection (iradon)."""
    return _ct_reconstruct(image, spacing, angles=180, photons=photons, seed=seed)


def ct_sparse_view(image: np.ndarray, angles: float, spacing: tuple[float, float],
                   seed: int) -> np.ndarray:
    """Few projection angles, filtered back-projection: streaks (skimage radon/iradon)."""
    return _ct_reconstruct(image, spacing, angles=int(angles), photons=None, seed=seed)


# --- TorchIO: MR k-space faults, bias field, anisotropy, noise ---------------------------------


def _torchio(image: np.ndarray, spacing: tuple[float, float], transform,  # noqa: ANN001
             columns_third: bool = False) -> np.ndarray:
    """Run a TorchIO transform on one slice, laid out as the (H, W, 1) volume it is, or with
    `columns_third` as (H, 1, W): transforms that work along the volume's third axis (Motion's
    k-space split) then see the slice's columns there."""
    import torch
    import torchio as tio

    rows, cols = (s if np.isfinite(s) and s > 0 else 1.0 for s in spacing)
    pixels = torch.from_numpy(image.astype(np.float32))
    volume = pixels[None, :, None, :] if columns_third else pixels[None, :, :, None]
    affine = np.diag([rows, 1.0, cols, 1.0] if columns_third else [rows, cols, 1.0, 1.0])
    out = transform(tio.ScalarImage(tensor=volume, affine=affine)).data[0]
    return (out[:, 0, :] if columns_third else out[:, :, 0]).numpy().astype(np.float32)


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def mr_ghosting(image: np.ndarray, intensity: float, spacing: tuple[float, float],
                seed: int) -> np.ndarray:
    import torchio as tio

    return _torchio(image, spacing, tio.Ghosting(num_ghosts=4, axis=0, intensity=intensity,
                                                 restore=0.02))


def mr_motion(image: np.ndarray, extent: float, spacing: tuple[float, float],
              seed: int) -> np.ndarray:
    """TorchIO Motion: in-plane rotations and translations at two moments of the acquisition.

    TorchIO splits k-space along the volume's third axis, so the slice is laid out with its
    columns there (the phase-encode direction): as (H, W, 1) that axis has one line, the split
    is empty, and the "motion" is only the last rigid move, with no artefact. The middle third
    (the k-space centre) is the still object, the outer thirds the moved ones.
    """
    import torchio as tio

    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(2, 3))
    # Axis 1 is the slice normal: rotations turn about it, translations stay in (0, 2).
    degrees = np.array([[0.0, extent * signs[0, 0], 0.0], [0.0, extent * signs[1, 0], 0.0]])
    translation = np.array([[extent * signs[0, 1], 0.0, extent * signs[0, 2]],
                            [-extent * signs[1, 1] / 2, 0.0, extent * signs[1, 2] / 2]])
    motion = tio.Motion(degrees=degrees, translation=translation, times=np.array([0.35, 0.7]),
                        image_interpolation="linear")
    return _torchio(image, spacing, motion, columns_third=True)


def mr_bias(image: np.ndarray, coefficient: float, spacing: tuple[float, float],
            seed: int) -> np.ndarray:
    import torchio as tio

    _seeded(seed)
    return _torchio(image, spacing, tio.RandomBiasField(coefficients=coefficient, order=3))


def thick_slice(image: np.ndarray, factor: float, spacing: tuple[float, float],
                seed: int) -> np.ndarray:
    """A low-resolution acquisition along rows: scikit-image `resize` down with anti-aliasing,
    then back up linearly (TorchIO's RandomAnisotropy aliases on small slices: its harm is not
    monotone in the factor there)."""
    from skimage.transform import resize

    rows = max(2, int(round(image.shape[0] / factor)))
    small = resize(image, (rows, *image.shape[1:]), order=1, anti_aliasing=True,
                   preserve_range=True)
    return resize(small, image.shape, order=1, preserve_range=True).astype(np.float32)


def mr_noise(image: np.ndarray, fraction: float, spacing: tuple[float, float],
             seed: int) -> np.ndarray:
    """TorchIO Noise (Gaussian, std a fraction of the 99th percentile), magnitude taken."""
    import torchio as tio

    std = fraction * float(np.percentile(image, 99))
    return np.abs(_torchio(image, spacing, tio.Noise(mean=0.0, std=std, seed=seed)))


JPEG = Family("jpeg", "Pillow JPEG quality", (75, 45, 25, 12, 5), jpeg)
DEFOCUS = Family("defocus", "Pillow GaussianBlur", (1.0, 2.0, 3.5, 5.0, 7.5), defocus)
PHOTO_NOISE = Family("noise", "skimage random_noise gaussian",
                     (0.001, 0.003, 0.007, 0.015, 0.03), gaussian_noise)
DARKER = (0.85, 0.7, 0.55, 0.42, 0.3)  # brightness factors: under-gain, dim illumination, fading

FAMILIES: dict[str, tuple[Family, ...]] = {
    "CT": (
        Family("dose", "skimage radon/iradon + Poisson counts",
               (1e6, 3e5, 1e5, 3e4, 1e4), ct_low_dose),
        Family("sparse_view", "skimage radon/iradon, few angles", (240, 120, 72, 48, 30),
               ct_sparse_view),
        Family("blur", "scipy.ndimage.gaussian_filter (mm)", (0.4, 0.8, 1.2, 1.7, 2.4),
               gaussian_blur_mm),
    ),
    "MR": (
        Family("noise", "torchio.Noise (magnitude)", (0.02, 0.04, 0.07, 0.1, 0.15), mr_noise),
        Family("ghosting", "torchio.Ghosting", (0.1, 0.2, 0.35, 0.5, 0.75), mr_ghosting),
        Family("motion", "torchio.Motion", (1.0, 2.0, 3.5, 5.0, 8.0), mr_motion),
        Family("bias", "torchio.RandomBiasField", (0.15, 0.3, 0.45, 0.6, 0.8), mr_bias),
        Family("anisotropy", "skimage.transform.resize down/up", (1.5, 2.0, 3.0, 4.0, 6.0),
               thick_slice),
    ),
    "XR": (
        Family("dose", "numpy Poisson counts", (3000, 1000, 400, 150, 60), poisson_counts),
        Family("scatter", "scipy veil", (0.1, 0.2, 0.32, 0.45, 0.6), scatter),
        Family("exposure", "gain + detector clipping", (1.15, 1.3, 1.5, 1.8, 2.2), overexpose),
        JPEG,
        Family("blur", "scipy.ndimage.gaussian_filter (mm)", (0.2, 0.4, 0.7, 1.0, 1.5),
               gaussian_blur_mm),
    ),
    "US": (
        Family("speckle", "skimage random_noise speckle", (0.02, 0.05, 0.1, 0.18, 0.3), speckle),
        Family("gain", "under-gain (multiplication)", DARKER, darken),
        Family("blur", "Pillow GaussianBlur", (1.5, 3.0, 5.0, 7.5, 11.0), defocus),
        JPEG,
    ),
    "FUNDUS": (
        JPEG,
        DEFOCUS,
        Family("illumination", "Pillow ImageEnhance.Brightness", DARKER, darken),
        PHOTO_NOISE,
    ),
    "HISTO": (
        JPEG,
        DEFOCUS,
        PHOTO_NOISE,
        Family("fade", "Pillow ImageEnhance.Contrast + Color", DARKER, fade),
    ),
    "NM": (
        Family("counts", "numpy Poisson counts", (300, 120, 50, 20, 8), poisson_counts),
        Family("blur", "scipy.ndimage.gaussian_filter (mm)", (2.0, 4.0, 6.0, 9.0, 13.0),
               gaussian_blur_mm),
    ),
}


def ladder(image: np.ndarray, spacing: tuple[float, float], family: Family,
           seed: int) -> list[np.ndarray]:
    """The clean image and the family's five levels (one draw, reused at every level)."""
    out = [image.astype(np.float32)]
    for strength in family.strengths:
        degraded = family.apply(image, strength, spacing, seed)
        out.append(np.nan_to_num(degraded.astype(np.float32), nan=0.0))
    return out
