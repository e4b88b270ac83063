"""The contract every degradation simulator keeps, and the registry that collects them.

Habit taken from TorchIO's random transforms: drawing parameters (`sample`) is kept apart from
applying them (`apply`, deterministic given the parameters and the generator), and the parameters
are a frozen dataclass that can be recorded next to the degraded image. Each simulator also maps
its parameters to a 0..1 severity per physical-parameter family (`severities`): that is the label
the model's physical-parameter queries are pre-trained on.

Images are in the reader's physical units (CT in HU, MR/XR/NM/US raw non-negative intensities of
any scale, photographs 0..255 RGB), torch float32, (H, W) grey or (3, H, W) colour. Spacing is
(row_mm, col_mm).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import torch

from mediqa_cli.taxonomy import MODALITIES, PHYSICAL_FAMILIES

Spacing = tuple[float, float]
P = TypeVar("P")

# Chain order: acquisition physics first, then reconstruction/detector, then storage (codecs).
ACQUISITION, RECONSTRUCTION, STORAGE = 0, 1, 2


class Degradation(ABC, Generic[P]):
    """One physical cause of poor image quality, simulated on a real image."""

    name: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]]
    families: ClassVar[tuple[str, ...]]
    stage: ClassVar[int] = ACQUISITION
    # A multiplicative field smooth over the whole field of view (coil bias, illumination):
    # SSIM's local window cannot see it, so the quality target prices its bias severity
    # instead (`mediqa_train.quality.shading_of`).
    smooth_field: ClassVar[bool] = False
    # False for a simulator added after the shipped network was trained: the physics-token
    # reader is fitted on it (`mediqa_train.physics_head`), while training chains and their
    # validation ladders leave it out, so the shipped recipe still draws the chains it drew;
    # a recipe puts it in for named modalities (`BatchRecipe.added_simulators`).
    in_training: ClassVar[bool] = True

    @abstractmethod
    def sample(self, rng: torch.Generator, severity: float | None = None) -> P:
        """Draw parameters; `severity` in [0, 1] picks them by a monotone map, None at random.

        Draws that do not depend on severity (directions, positions) come first from `rng`, so
        one seed with rising severity gives the same artefact, only stronger.
        """

    @abstractmethod
    def apply(self, image: torch.Tensor, spacing: Spacing, params: P,
              rng: torch.Generator) -> torch.Tensor:
        """Degrade `image` (same shape, dtype and units back); deterministic given `rng`'s seed."""

    @abstractmethod
    def severities(self, params: P) -> dict[str, float]:
        """Severity in [0, 1] per physical-parameter family this simulator affects."""

    def __call__(self, image: torch.Tensor, spacing: Spacing, rng: torch.Generator,
                 severity: float | None = None) -> tuple[torch.Tensor, P]:
        """Sample then apply; returns the degraded image and the parameters used."""
        params = self.sample(rng, severity)
        return self.apply(image, spacing, params, rng), params

    def record(self, params: P) -> dict[str, Any]:
        """JSON-ready record of one application: name, parameters and severities."""
        return {"name": self.name, "params": dataclasses.asdict(params),  # type: ignore[call-overload]
                "severities": self.severities(params)}


REGISTRY: dict[str, Degradation[Any]] = {}


def register(cls: type[Degradation[Any]]) -> type[Degradation[Any]]:
    """Class decorator: check the declared vocabulary and add one instance to REGISTRY."""
    bad = set(cls.families) - set(PHYSICAL_FAMILIES)
    bad |= set(cls.modalities) - set(MODALITIES)
    if bad:
        raise ValueError(f"{cls.__name__} declares unknown families/modalities {sorted(bad)}")
    if cls.name in REGISTRY:
        raise ValueError(f"degradation {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls()
    return cls


# --- small helpers shared by the simulators -------------------------------------------------

def draw_severity(rng: torch.Generator, severity: float | None) -> float:
    """The severity to use: the given one (checked to lie in [0, 1]) or a uniform draw."""
    if severity is None:
        return uniform(rng)
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must lie in [0, 1], got {severity}")
    return float(severity)


def uniform(rng: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    """One float drawn uniformly in [lo, hi) from `rng`."""
    return lo + (hi - lo) * float(torch.rand((), generator=rng, device=rng.device))


def randn(shape: tuple[int, ...] | torch.Size, rng: torch.Generator,
          device: torch.device) -> torch.Tensor:
    """Standard normal float32 noise drawn on the generator's device, moved to `device`."""
    return torch.randn(tuple(shape), generator=rng, device=rng.device).to(device)


def poisson(rates: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Poisson counts for `rates`, drawn on the generator's device (deterministic per seed)."""
    return torch.poisson(rates.to(rng.device), generator=rng).to(rates.device)


def inverse_severity(s: float, at_one: float, power: int = 1) -> float:
    """A parameter that shrinks as 1 / s**power: `at_one` at severity 1, inf (no effect) at 0."""
    return math.inf if s == 0 else at_one / s**power


def quantile_sample(image: torch.Tensor) -> torch.Tensor:
    """The image flattened to float, strided down to at most 2^18 values: quantiles of a large
    image cost a sort, and a subsample is plenty for an intensity scale."""
    flat = image.detach().reshape(-1).float()
    if flat.numel() > 1 << 18:
        flat = flat[:: flat.numel() // (1 << 18) + 1]
    return flat


def robust_quantiles(image: torch.Tensor, qs: Sequence[float]) -> list[float]:
    """The image's qs-quantiles, from `quantile_sample`."""
    flat = quantile_sample(image)
    return [float(v) for v in torch.quantile(flat, torch.tensor(qs, device=flat.device))]


def robust_max(image: torch.Tensor, q: float = 0.99) -> float:
    """The q-quantile of the image, a scale for raw intensities of arbitrary units (>0)."""
    flat = quantile_sample(image)
    value = float(torch.quantile(flat, q))
    return value if value > 0 else max(float(flat.abs().max()), 1e-6)


def poisson_counts(image: torch.Tensor, peak_counts: float, rng: torch.Generator) -> torch.Tensor:
    """Counting statistics: Poisson counts with `peak_counts` expected where the image is at its
    99th percentile (counts proportional to the non-negative signal), back in the image's units.

    Relative noise is 1 / sqrt(counts); `peak_counts` = inf adds none (a copy comes back).
    """
    if not math.isfinite(peak_counts):
        return image.clone()
    scale = peak_counts / robust_max(image)
    return (poisson(image.clamp_min(0) * scale, rng) / scale).float()


def check_image(image: torch.Tensor) -> None:
    """Refuse anything but float32 (H, W) or (3, H, W) with clear words."""
    if image.dtype != torch.float32:
        raise TypeError(f"images are float32 in physical units, got {image.dtype}")
    if image.dim() == 2 or (image.dim() == 3 and image.shape[0] == 3):
        return
    raise ValueError(f"images are (H, W) grey or (3, H, W) colour, got {tuple(image.shape)}")


def clip01(value: float) -> float:
    """Clamp a severity into [0, 1]."""
    return min(1.0, max(0.0, float(value)))
