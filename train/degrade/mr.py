"""MR degradations, simulated where MR physics happens: in complex k-space.

The magnitude image is taken as a real, non-negative object (zero phase), transformed with the
orthonormal centred FFT, corrupted, and brought back as a magnitude image: so noise is Rician,
motion and ghosts spread along the phase-encode direction, and truncation rings as Gibbs predicts.
The phase-encode direction is the row axis (k_y = dim -2); lines are acquired in sequential
(linear) order from -k_max to +k_max, so a line's position in k-space is also its time in the scan.
"""

from __future__ import annotations

import cmath
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .base import (
    RECONSTRUCTION,
    Degradation,
    Spacing,
    check_image,
    clip01,
    draw_severity,
    randn,
    register,
    robust_max,
    uniform,
)
from .fields import legendre_field, random_coefficients
from .fourier import centred_frequencies, fft2c, filter2d, ifft2c


def _line_fraction(h: int, device: torch.device) -> torch.Tensor:
    """k_y of each phase-encode line as a fraction of k-space, in [-0.5, 0.5) (0 = centre)."""
    return (torch.arange(h, device=device) - h // 2) / h


def _on_magnitude(apply: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run a simulator on the slice raised to a non-negative floor, then put the floor back.

    Why: these simulators take the slice as a magnitude image and return one, but a processed
    slice (z-scored brains: a quarter of the corpus's MR training slices) holds negative
    values, which `abs()` flipped at every severity, so the pre-training target (SSIM to the
    clean slice) fell as far at the first step as at the last (benchmarks/RESULTS.md)."""

    @functools.wraps(apply)
    def on_magnitude(self: Any, image: torch.Tensor, spacing: Spacing, params: Any,
                     rng: torch.Generator) -> torch.Tensor:
        # The decorated simulators' one check, made before the shift, which would turn an
        # integer slice into floats.
        check_image(image)
        low = float(image.min()) if image.numel() else 0.0
        if not low < 0:  # non-negative, or NaN (which these simulators spread, as before)
            return apply(self, image, spacing, params, rng)
        return apply(self, image - low, spacing, params, rng) + low

    return on_magnitude


def _kspace_weighted(image: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Magnitude image reconstructed after multiplying its k-space by `weight` (a sampling mask
    zero-fills what was not acquired; a complex factor corrupts lines)."""
    return ifft2c(fft2c(image.to(torch.complex64)) * weight).abs().float()


# --- thermal noise ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MRNoiseParams:
    """sigma_rel: std of the complex Gaussian receiver noise in each of the real and imaginary
    channels, as a fraction of the image's 99th-percentile magnitude (dimensionless)."""

    sigma_rel: float


@register
class MRNoise(Degradation[MRNoiseParams]):
    """Thermal receiver noise: white complex Gaussian in k-space, Rician in the magnitude image.

    With orthonormal FFTs the image-domain noise has the same sigma per channel; the magnitude of
    signal plus complex noise is Rician, so background (zero-signal) pixels follow a Rayleigh law
    with mean sigma * sqrt(pi / 2). Gudbjartsson & Patz, "The Rician distribution of noisy MRI
    data", Magn Reson Med 34(6), 1995.
    """

    name = "mr_noise"
    modalities = ("MR",)
    families = ("noise",)
    SIGMA_MAX = 0.12  # at severity 1, SNR of the bright tissue is about 8

    def sample(self, rng: torch.Generator, severity: float | None = None) -> MRNoiseParams:
        return MRNoiseParams(sigma_rel=draw_severity(rng, severity) * self.SIGMA_MAX)

    @_on_magnitude
    def apply(self, image: torch.Tensor, spacing: Spacing, params: MRNoiseParams,
              rng: torch.Generator) -> torch.Tensor:
        if params.sigma_rel <= 0:
            return image.clone()
        sigma = params.sigma_rel * robust_max(image)
        kspace = fft2c(image.to(torch.complex64))
        noise = torch.complex(randn(image.shape, rng, image.device),
                              randn(image.shape, rng, image.device))
        return ifft2c(kspace + sigma * noise).abs().float()

    def severities(self, params: MRNoiseParams) -> dict[str, float]:
        return {"noise": clip01(params.sigma_rel / self.SIGMA_MAX)}


# --- rigid motion ----------------------------------------------------------------------------

@dataclass(frozen=True)
class MRMotionParams:
    """A rigid movement during one contiguous segment of the phase-encode lines.

    segment_centre: k_y of the segment's centre as a fraction of k-space in [-0.5, 0.5]
        (0 = the k-space centre, acquired mid-scan in sequential ordering).
    segment_width: fraction of the phase-encode lines acquired in the moved position (0..1).
    translation_mm: (row, col) displacement of the object during the segment, mm.
    rotation_deg: in-plane rotation of the object during the segment, degrees.
    """

    segment_centre: float
    segment_width: float
    translation_mm: tuple[float, float]
    rotation_deg: float


def _kspace_weight(centre: float, width: float) -> float:
    """Share of a typical image's k-space energy in a segment [centre +- width/2] of k_y.

    Natural images have a power spectrum falling like 1 / (1 + (k / k0)^2) (k0 = 0.05 of
    k-space); integrating it over the segment gives a closed form with arctan.
    """
    k0 = 0.05
    lo = max(-0.5, centre - width / 2.0)
    hi = min(0.5, centre + width / 2.0)
    if hi <= lo:
        return 0.0
    return (math.atan(hi / k0) - math.atan(lo / k0)) / (2.0 * math.atan(0.5 / k0))


@register
class MRMotion(Degradation[MRMotionParams]):
    """Rigid in-plane motion: k-space lines of one segment come from the moved object.

    A translation multiplies k-space by a linear phase ramp exp(-2 pi i k.d) (Fourier shift
    theorem); a rotation rotates k-space with the object (applied to the image, which is the same
    thing). Lines acquired while the object was displaced are inconsistent with the rest: the
    error spreads as ghosts and blur along the phase-encode direction, and it hurts most when the
    segment holds the energetic k-space centre. As in TorchIO's RandomMotion, after Shaw et al.,
    "MRI k-space motion artefact augmentation", MIDL 2019.

    Severity = motion size (max of |t| / 6 mm, |rot| / 6 deg) x sqrt of the segment's share of
    k-space energy relative to a 4 % segment at the centre (capped at 1). Segments span 4-50 %
    of the lines.
    """

    name = "mr_motion"
    modalities = ("MR",)
    families = ("motion",)
    TRANSLATION_MAX_MM = 6.0
    ROTATION_MAX_DEG = 6.0
    REF_WEIGHT = _kspace_weight(0.0, 0.04)

    def centrality(self, centre: float, width: float) -> float:
        """0..1 weight of where in k-space the motion happened (1 = at the centre)."""
        return min(1.0, math.sqrt(_kspace_weight(centre, width) / self.REF_WEIGHT))

    def sample(self, rng: torch.Generator, severity: float | None = None) -> MRMotionParams:
        u_pos, u_side, u_width = uniform(rng), uniform(rng), uniform(rng)
        u_dir, u_rot, u_rot_sign = uniform(rng), uniform(rng), uniform(rng)
        s = draw_severity(rng, severity)
        # Mostly short movements, but up to half of the lines: a patient who moves and stays
        # moved (TorchIO's RandomMotion at fixed times) corrupts a third or more of k-space,
        # which blurs and ghosts the whole object rather than adding one faint replica.
        width = 0.04 + 0.46 * u_width**2
        # Worse motion happens nearer the centre: the segment slides in as severity rises.
        centre = (1.0 if u_side < 0.5 else -1.0) * u_pos * (0.5 - width / 2.0) * (1.0 - s)
        size = min(1.0, s / max(self.centrality(centre, width), 1e-6))
        angle = 2.0 * math.pi * u_dir
        t = size * self.TRANSLATION_MAX_MM
        rot = size * self.ROTATION_MAX_DEG * u_rot * (1.0 if u_rot_sign < 0.5 else -1.0)
        return MRMotionParams(centre, width, (t * math.sin(angle), t * math.cos(angle)), rot)

    @_on_magnitude
    def apply(self, image: torch.Tensor, spacing: Spacing, params: MRMotionParams,
              rng: torch.Generator) -> torch.Tensor:
        (ty, tx), rot = params.translation_mm, params.rotation_deg
        if (ty == 0 and tx == 0 and rot == 0) or params.segment_width <= 0:
            return image.clone()
        h, w = image.shape[-2:]
        ky = _line_fraction(h, image.device)
        in_segment = (ky - params.segment_centre).abs() <= params.segment_width / 2.0
        if _kspace_weight(params.segment_centre, params.segment_width) > 0.5:
            # The segment holds most of k-space's energy, so the image shows the object where
            # it was then: keep that position and move the rest of the lines the other way.
            # The same relative motion for a translation (exactly: the old result shifted
            # back); with a rotation, the same size of motion, its translation not rotated
            # with it, and the bilinear rotation now blurs the outer lines instead of the
            # centre. The result stays registered with the clean image, so the pre-training
            # target (SSIM to it) prices the artefact, not a displacement (benchmarks/RESULTS.md,
            # "The network never learnt our MR motion simulator").
            in_segment, ty, tx, rot = ~in_segment, -ty, -tx, -rot
        moved = _rotate(image, rot) if rot else image
        fy, fx = centred_frequencies(h, w, image.device)
        ramp = torch.exp(-2j * math.pi * (fy * (ty / spacing[0]) + fx * (tx / spacing[1])))
        k_still = fft2c(image.to(torch.complex64))
        k_moved = fft2c(moved.to(torch.complex64)) * ramp.to(torch.complex64)
        kspace = torch.where(in_segment[:, None], k_moved, k_still)
        return ifft2c(kspace).abs().float()

    def severities(self, params: MRMotionParams) -> dict[str, float]:
        t = math.hypot(*params.translation_mm) / self.TRANSLATION_MAX_MM
        r = abs(params.rotation_deg) / self.ROTATION_MAX_DEG
        weight = self.centrality(params.segment_centre, params.segment_width)
        return {"motion": clip01(max(t, r) * weight)}


def _rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate (..., H, W) about the image centre by bilinear resampling (zeros outside)."""
    h, w = image.shape[-2:]
    a = math.radians(degrees)
    # grid_sample works in normalised coordinates; correct for a non-square field of view.
    theta = torch.tensor([[math.cos(a), -math.sin(a) * h / w, 0.0],
                          [math.sin(a) * w / h, math.cos(a), 0.0]], device=image.device)
    flat = image.reshape(-1, 1, h, w)
    grid = F.affine_grid(theta[None].expand(flat.shape[0], 2, 3), list(flat.shape),
                         align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(image.shape)


# --- ghosting --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MRGhostingParams:
    """period: every `period`-th phase-encode line is corrupted (2 = EPI odd/even, N/2 ghost).
    phase_error_rad: phase error of the corrupted lines, radians (-pi..pi).
    amplitude: gain of the corrupted lines (1 = a pure phase error, 0 = lines lost)."""

    period: int
    phase_error_rad: float
    amplitude: float = 1.0


@register
class MRGhosting(Degradation[MRGhostingParams]):
    """N/2 (Nyquist) and periodic ghosting from an inconsistency on every n-th k-space line.

    Multiplying every n-th line by g = a e^{i phi} leaves the object at (1 + (g - 1)/n) of its
    amplitude and adds n - 1 copies shifted by multiples of N/n along the phase-encode axis, each
    of amplitude |g - 1| / n. A phase error (a = 1) is the EPI odd/even-echo N/2 ghost (Bernstein,
    King & Zhou, Handbook of MRI Pulse Sequences, 2004, ch. 16); a gain error (phi = 0) is the
    signal modulation of periodic (respiratory, cardiac, flow) motion, as TorchIO's Ghosting.
    Both happen. Their ghosts outside the object are alike; they differ on the object itself,
    whose amplitude |1 + (g - 1)/n| moves to first order in |g - 1| for a gain error and only to
    second order for a small phase error (and where a ghost overlaps the object, by the
    difference between the ghost's source and the tissue under it, times (1 - g)/n). So the error
    g - 1 is drawn with its size from the severity and its direction in the complex plane uniform.

    Severity = total ghost amplitude (n - 1) |g - 1| / n, relative to 0.5 of the object.
    """

    name = "mr_ghosting"
    modalities = ("MR",)
    families = ("ghosting",)
    GHOST_MAX = 0.5

    def sample(self, rng: torch.Generator, severity: float | None = None) -> MRGhostingParams:
        period = 2 + min(2, int(uniform(rng) * 3))
        s = draw_severity(rng, severity)
        error = s * self.GHOST_MAX * period / (period - 1)  # |g - 1|, at most 1
        gain = 1.0 + cmath.rect(error, uniform(rng, -math.pi, math.pi))
        return MRGhostingParams(period, cmath.phase(gain), abs(gain))

    def _line_gain(self, params: MRGhostingParams) -> complex:
        return cmath.rect(params.amplitude, params.phase_error_rad)

    @_on_magnitude
    def apply(self, image: torch.Tensor, spacing: Spacing, params: MRGhostingParams,
              rng: torch.Generator) -> torch.Tensor:
        gain = self._line_gain(params)
        if gain == 1:
            return image.clone()
        h = image.shape[-2]
        lines = (torch.arange(h, device=image.device) % params.period) == 1
        factor = torch.ones(h, dtype=torch.complex64, device=image.device)
        factor[lines] = gain
        return _kspace_weighted(image, factor[:, None])

    def severities(self, params: MRGhostingParams) -> dict[str, float]:
        n = params.period
        ghost = (n - 1) * abs(self._line_gain(params) - 1) / n
        return {"ghosting": clip01(ghost / self.GHOST_MAX)}


# --- spikes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MRSpikeParams:
    """positions: (k_y, k_x) of each spike as fractions of k-space in [-0.5, 0.5].
    intensity: spike magnitude relative to the k-space DC magnitude (dimensionless); each spike
        lays a stripe pattern of amplitude intensity x mean image intensity over the image."""

    positions: tuple[tuple[float, float], ...]
    intensity: float


@register
class MRSpike(Degradation[MRSpikeParams]):
    """Herringbone / stripe artefact from spikes (bad data points) in k-space.

    A spike is one corrupted k-space sample, e.g. from an electrostatic discharge in the coil; its
    inverse FFT is a plane wave over the whole field of view. Reported under the ghosting family:
    like ghosts, it is signal misplaced across the image by a k-space error. After TorchIO's
    RandomSpike; Zhuo & Gullapalli, "MR artifacts, safety and quality control", RadioGraphics
    26(1), 2006.
    """

    name = "mr_spike"
    modalities = ("MR",)
    families = ("ghosting",)
    INTENSITY_MAX = 0.5

    def sample(self, rng: torch.Generator, severity: float | None = None) -> MRSpikeParams:
        n = 1 + int(uniform(rng) < 0.3)
        positions = []
        for _ in range(n):  # away from the centre, where a spike would be a mere offset
            radius, angle = uniform(rng, 0.05, 0.45), uniform(rng, 0.0, 2.0 * math.pi)
            positions.append((radius * math.sin(angle), radius * math.cos(angle)))
        s = draw_severity(rng, severity)
        return MRSpikeParams(tuple(positions), s * self.INTENSITY_MAX / n)

    @_on_magnitude
    def apply(self, image: torch.Tensor, spacing: Spacing, params: MRSpikeParams,
              rng: torch.Generator) -> torch.Tensor:
        if params.intensity <= 0 or not params.positions:
            return image.clone()
        h, w = image.shape[-2:]
        kspace = fft2c(image.to(torch.complex64))
        dc = kspace[..., h // 2, w // 2].abs()
        for ky, kx in params.positions:
            row = min(h - 1, max(0, h // 2 + round(ky * h)))
            col = min(w - 1, max(0, w // 2 + round(kx * w)))
            kspace[..., row, col] += params.intensity * dc
        return ifft2c(kspace).abs().float()

    def severities(self, params: MRSpikeParams) -> dict[str, float]:
        total = params.intensity * len(params.positions)
        return {"ghosting": clip01(total / self.INTENSITY_MAX)}


# --- undersampling, partial Fourier, truncation ---------------------------------------------

@dataclass(frozen=True)
class MRUndersamplingParams:
    """acceleration: R, the ratio of all phase-encode lines to those acquired (>= 1).
    centre_fraction: fraction of lines around k_y = 0 always acquired (calibration region).
    pattern: "random" (compressed-sensing style) or "equispaced" (parallel-imaging style)."""

    acceleration: float
    centre_fraction: float
    pattern: str


@register
class MRUndersampling(Degradation[MRUndersamplingParams]):
    """Cartesian phase-encode undersampling, reconstructed by zero filling (no unfolding).

    Equispaced skipping folds the object into R aliased copies; random skipping turns aliasing
    into incoherent noise-like streaks along the phase-encode axis. Masks as in the fastMRI
    challenge, Zbontar et al., arXiv:1811.08839, 2018. Severity = (1 - 1/R) / (1 - 1/6).
    """

    name = "mr_undersampling"
    modalities = ("MR",)
    families = ("undersampling",)
    stage = RECONSTRUCTION
    R_MAX = 6.0

    def sample(self, rng: torch.Generator, severity: float | None = None
               ) -> MRUndersamplingParams:
        pattern = "random" if uniform(rng) < 0.5 else "equispaced"
        centre = uniform(rng, 0.04, 0.12)
        s = draw_severity(rng, severity)
        keep = 1.0 - s * (1.0 - 1.0 / self.R_MAX)
        return MRUndersamplingParams(1.0 / keep, centre, pattern)

    @_on_magnitude
    def apply(self, image: torch.Tensor, spacing: Spacing, params: MRUndersamplingParams,
              rng: torch.Generator) -> torch.Tensor:
        if params.acceleration <= 1.0:
            return image.clone()
        h = image.shape[-2]
        ky = _line_fraction(h, image.device)
        centre = ky.abs() <= params.centre_fraction / 2.0
        keep = 1.0 / params.acceleration
        if params.pattern == "random":
            p = max(0.0, (keep - params.centre_fraction) / max(1e-6, 1.0 - params.centre_fraction))
            draws = torch.rand(h, generator=rng, device=rng.device).to(image.device)
            mask = centre | (draws < p)
        else:
            idx = torch.arange(h, device=image.device, dtype=torch.float32)
            mask = centre | (torch.floor(idx * keep) != torch.floor((idx - 1) * keep))
        return _kspace_weighted(image, mask[:, None])

    def severities(self, params: MRUndersamplingParams) -> dict[str, float]:
        s = (1.0 - 1.0 / max(1.0, params.acceleration)) / (1.0 - 1.0 / self.R_MAX)
        return {"undersampling": clip01(s)}


@dataclass(frozen=True)
class MRPartialFourierParams:
    """fraction: share of the phase-encode k-space acquired from one side (0.5..1; 1 = full).
    side: +1 keeps the high-k_y end, -1 the low end."""

    fraction: float
    side: int


@register
class MRPartialFourier(Degradation[MRPartialFourierParams]):
    """Partial Fourier acquisition reconstructed by zero filling (no homodyne correction).

    Skipping one side of k-space saves time; zero filling then halves the resolution of the
    missing frequencies and rings at edges along the phase-encode axis. McGibney et al.,
    "Quantitative evaluation of several partial Fourier reconstruction algorithms used in MRI",
    Magn Reson Med 30(1), 1993. Severity = (1 - fraction) / 0.45.
    """

    name = "mr_partial_fourier"
    modalities = ("MR",)
    families = ("undersampling",)
    stage = RECONSTRUCTION
    MISSING_MAX = 0.45

    def sample(self, rng: torch.Generator, severity: float | None = None
               ) -> MRPartialFourierParams:
        side = 1 if uniform(rng) < 0.5 else -1
        return MRPartialFourierParams(1.0 - draw_severity(rng, severity) * self.MISSING_MAX, side)

    @_on_magnitude
    def apply(self, image: torch.Tensor, spacing: Spacing, params: MRPartialFourierParams,
              rng: torch.Generator) -> torch.Tensor:
        if params.fraction >= 1.0:
            return image.clone()
        h = image.shape[-2]
        ky = _line_fraction(h, image.device) * params.side
        mask = ky >= 0.5 - params.fraction
        return _kspace_weighted(image, mask[:, None])

    def severities(self, params: MRPartialFourierParams) -> dict[str, float]:
        return {"undersampling": clip01((1.0 - params.fraction) / self.MISSING_MAX)}


@dataclass(frozen=True)
class MRTruncationParams:
    """kept_fraction: acquired matrix / reconstructed matrix along both axes (0.25..1)."""

    kept_fraction: float


@register
class MRTruncation(Degradation[MRTruncationParams]):
    """k-space truncation: a small acquisition matrix zero-filled to a larger display matrix.

    The hard edge of the sampled region convolves the image with a sinc: Gibbs ringing parallel to
    sharp edges and a wider point-spread function. Wood & Henkelman, "Truncation artifacts in
    magnetic resonance imaging", Magn Reson Med 2(6), 1985. Severity = (1 - kept) / 0.75.
    """

    name = "mr_truncation"
    modalities = ("MR",)
    families = ("undersampling", "blur")
    stage = RECONSTRUCTION
    LOST_MAX = 0.75

    def sample(self, rng: torch.Generator, severity: float | None = None) -> MRTruncationParams:
        return MRTruncationParams(1.0 - draw_severity(rng, severity) * self.LOST_MAX)

    @_on_magnitude
    def apply(self, image: torch.Tensor, spacing: Spacing, params: MRTruncationParams,
              rng: torch.Generator) -> torch.Tensor:
        if params.kept_fraction >= 1.0:
            return image.clone()
        h, w = image.shape[-2:]
        fy, fx = centred_frequencies(h, w, image.device)
        half = params.kept_fraction / 2.0
        mask = (fy.abs() <= half) & (fx.abs() <= half)
        return _kspace_weighted(image, mask)

    def severities(self, params: MRTruncationParams) -> dict[str, float]:
        s = clip01((1.0 - params.kept_fraction) / self.LOST_MAX)
        return {"undersampling": s, "blur": s}


# --- bias field ------------------------------------------------------------------------------

@dataclass(frozen=True)
class MRBiasParams:
    """coefficients: Legendre coefficients of the log-field (see fields.legendre_terms(order)).
    order: polynomial order of the field (smoothness: no structure finer than FOV / order)."""

    coefficients: tuple[float, ...]
    order: int


@register
class MRBias(Degradation[MRBiasParams]):
    """Smooth multiplicative intensity non-uniformity from receive-coil sensitivity (B1-).

    image x exp(sum c_ij P_i(y) P_j(x)), normalised to unit mean over the object so only the
    shading changes. Van Leemput et al., IEEE TMI 18(10), 1999; Sled et al., "A nonparametric
    method for automatic correction of intensity nonuniformity in MRI data" (N3), IEEE TMI 17(1),
    1998. Severity = sum |c| / ln 2.5 (the field stays within a factor 2.5 either way).
    """

    name = "mr_bias"
    modalities = ("MR",)
    families = ("bias",)
    smooth_field = True
    LOG_RANGE_MAX = math.log(2.5)
    ORDER = 3

    def sample(self, rng: torch.Generator, severity: float | None = None) -> MRBiasParams:
        direction = random_coefficients(rng, self.ORDER, 1.0)
        s = draw_severity(rng, severity)
        return MRBiasParams(tuple(c * s * self.LOG_RANGE_MAX for c in direction), self.ORDER)

    @_on_magnitude
    def apply(self, image: torch.Tensor, spacing: Spacing, params: MRBiasParams,
              rng: torch.Generator) -> torch.Tensor:
        if not any(params.coefficients):
            return image.clone()
        h, w = image.shape[-2:]
        field = legendre_field(h, w, params.coefficients, params.order, image.device)
        weight = image.reshape(-1, h, w).mean(0).clamp_min(0)
        mean = float((field * weight).sum() / weight.sum().clamp_min(1e-12))
        return (image * (field / mean)).float()

    def severities(self, params: MRBiasParams) -> dict[str, float]:
        return {"bias": clip01(sum(abs(c) for c in params.coefficients) / self.LOG_RANGE_MAX)}


# --- thick slices ----------------------------------------------------------------------------

@dataclass(frozen=True)
class MRThickSliceParams:
    """thickness_px: slice thickness along `axis` in pixels of this image (1 = isotropic).
    axis: 0 if the slice direction runs along the rows of this (reformatted) image, 1 columns."""

    thickness_px: float
    axis: int


@register
class MRThickSlice(Degradation[MRThickSliceParams]):
    """Thick slices seen in a reformat: partial-volume averaging along one in-plane axis.

    A 2D slice cut across a stack of thick slices shows, along the slice direction, the
    rectangular slice profile: a box PSF of the slice thickness, i.e. the MTF sinc(t f). Also
    models anisotropic voxels in general. Severity = (t - 1) / 5 pixels.
    """

    name = "mr_thick_slice"
    modalities = ("MR",)
    families = ("blur",)
    stage = RECONSTRUCTION
    THICKNESS_MAX = 6.0

    def sample(self, rng: torch.Generator, severity: float | None = None) -> MRThickSliceParams:
        axis = int(uniform(rng) < 0.5)
        return MRThickSliceParams(1.0 + draw_severity(rng, severity) * (self.THICKNESS_MAX - 1),
                                  axis)

    def apply(self, image: torch.Tensor, spacing: Spacing, params: MRThickSliceParams,
              rng: torch.Generator) -> torch.Tensor:
        check_image(image)
        t = params.thickness_px
        if t <= 1.0:
            return image.clone()

        def transfer(fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
            f = fy if params.axis == 0 else fx
            # box of width t minus the unit pixel box already present: sinc(t f) / sinc(f)
            return (torch.sinc(t * f) / torch.sinc(f).clamp_min(1e-3)).expand(
                fy.shape[0], fx.shape[1])

        return filter2d(image, transfer, int(math.ceil(t)) + 1)

    def severities(self, params: MRThickSliceParams) -> dict[str, float]:
        return {"blur": clip01((params.thickness_px - 1.0) / (self.THICKNESS_MAX - 1.0))}


__all__ = ["MRBias", "MRGhosting", "MRMotion", "MRNoise", "MRPartialFourier",
           "MRSpike", "MRThickSlice", "MRTruncation", "MRUndersampling"]
