"""The reference quality target: how much a simulated degradation changed a real image, 0..100.

This is the physics-derived score the model is PRE-TRAINED to predict. It is a full-reference
similarity between a degraded image and its clean original, not an expert rating: it says how far
the simulated physics moved the image, and it is only defined where the clean original exists
(i.e. in training). Expert scores come later, by fine-tuning.

Measure: SSIM (Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error
visibility to structural similarity", IEEE TIP 13(4), 2004; Gaussian window sigma 1.5 px,
K1 = 0.01, K2 = 0.03) on the image normalised as a reader would view it, averaged over a
foreground mask, mapped to 100 x max(0, SSIM) (100 = identical). SSIM is used rather than PSNR
because it responds to noise, blur, ringing, ghosts and contrast loss alike on one scale, and
rather than MS-SSIM because training slices can be 64 px, too small for five dyadic scales.

Per modality (normalisation uses the CLEAN image's parameters for both images, so a change of
brightness or contrast counts as a change):
- CT: two HU windows, wide (-1000..1000, lung and bone) and soft tissue (-160..240), averaged:
  radiologists read both, and noise and streaks show mainly in the narrow one. Mask: the body
  (HU > -500, holes filled, so the lungs count), dilated.
- MR, NM, US: robust range (0.5th..99.5th percentile); mask: object above 10 % (MR, NM) or 2 % (US
  sector) of that range, holes filled, dilated by 3 % of the image size so ghosts and ringing
  next to the object count while empty air, whose SSIM is undefined, does not dominate.
- XR, HISTO, OTHER: the whole image (a radiograph and a histology tile are exposed everywhere).
- FUNDUS: 0..255 scale; mask: the circular retina (brighter than 8 % of range), dilated.
Colour images: SSIM per channel, averaged (stain fading and colour casts count).

Shading (a smooth multiplicative field: MR coil bias, uneven illumination) is what SSIM cannot
see: its window is 1.5 px, and a field that varies over the whole field of view leaves every
local mean, contrast and structure nearly unchanged. On the v0.2.0 test ladders a full-severity
MR bias field scored 93-97 and uneven illumination 98-99, so a ladder's steps fell below the
ranking loss's 2-point margin and pre-training never learned that shading costs quality. An
image-based non-uniformity measure (std of the log ratio of heavily smoothed images) was tried
and rejected: the Rician noise floor and defocus moved it as much as the fields did. The
simulator knows the field it applied, so when a recipe sets `data.shading_weight` (w) the target
is SSIM x (1 - w x the field's bias severity, its log range / ln 2.5); w = SHADING_WEIGHT makes a
field spanning a factor 2.5 cost 35 %, about what the other families cost at full severity.
Ultrasound TGC errors (also the bias family) are not priced again: SSIM already sees them.
w = 0, the default, is the SSIM-only target that weights up to v0.2.0 were trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

from .degrade.base import robust_quantiles

CT_WINDOWS: tuple[tuple[float, float], ...] = ((-1000.0, 1000.0), (-160.0, 240.0))
_MASK_THRESHOLD = {"MR": 0.10, "NM": 0.10, "US": 0.02, "FUNDUS": 0.08}
_FULL_FRAME = {"XR", "HISTO", "OTHER"}
SHADING_WEIGHT = 0.35


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0,
             sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of two (C, H, W) images with a Gaussian window (reflect-padded)."""
    radius = max(1, int(math.ceil(3.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[0]

    def blur(z: torch.Tensor) -> torch.Tensor:
        z = F.pad(z[None], (radius, radius, radius, radius), mode="reflect")
        z = F.conv2d(z, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(z, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _as_chw(image: torch.Tensor) -> torch.Tensor:
    return (image[None] if image.dim() == 2 else image).float()


def normalised_views(clean: torch.Tensor, degraded: torch.Tensor, modality: str
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(clean, degraded) pairs on a 0..1 scale set by the clean image, one per viewing window."""
    a, b = _as_chw(clean), _as_chw(degraded)
    if modality == "CT":
        return [(((a - lo) / (hi - lo)).clamp(0, 1), ((b - lo) / (hi - lo)).clamp(0, 1))
                for lo, hi in CT_WINDOWS]
    if modality in ("FUNDUS", "HISTO"):
        return [(a / 255.0, b / 255.0)]
    lo, hi = robust_quantiles(a, (0.005, 0.995))
    scale = max(hi - lo, 1e-6)
    return [((a - lo) / scale, (b - lo) / scale)]


def foreground_mask(clean: torch.Tensor, modality: str) -> torch.Tensor:
    """Boolean (H, W) mask of where the reference quality is measured (see module docstring)."""
    grey = _as_chw(clean).mean(0)
    h, w = grey.shape
    if modality in _FULL_FRAME:
        return torch.ones(h, w, dtype=torch.bool, device=clean.device)
    if modality == "CT":
        seed = (grey > -500.0).cpu().numpy()
    else:
        view = normalised_views(clean, clean, modality)[0][0].mean(0)
        seed = (view > _MASK_THRESHOLD.get(modality, 0.1)).cpu().numpy()
    if not seed.any():
        return torch.ones(h, w, dtype=torch.bool, device=clean.device)
    filled = ndimage.binary_fill_holes(seed)
    radius = max(2, round(0.03 * min(h, w)))
    yy, xx = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    mask = ndimage.binary_dilation(filled, structure=(yy**2 + xx**2) <= radius**2)
    return torch.from_numpy(mask).to(clean.device)


def reference_quality(clean: torch.Tensor, degraded: torch.Tensor, modality: str,
                      mask: torch.Tensor | None = None, shading: float = 0.0,
                      shading_weight: float = 0.0) -> float:
    """Physics-derived quality target in 0..100 (100 = identical to the clean original).

    `clean` and `degraded` are in the reader's physical units, same shape; `mask` (H, W) may be
    passed to reuse a foreground mask computed once per clean image; `shading` is the
    bias-family severity (0..1) of the simulated field, which SSIM cannot see (module docstring),
    and `shading_weight` what a full-severity field costs (0: SSIM alone, the target that
    weights up to v0.2.0 were trained on).
    """
    if clean.shape != degraded.shape:
        raise ValueError(f"shapes differ: {tuple(clean.shape)} vs {tuple(degraded.shape)}")
    if mask is None:
        mask = foreground_mask(clean, modality)
    weight = mask.float()
    scores = []
    for a, b in normalised_views(clean, degraded, modality):
        smap = ssim_map(a, b).mean(0)
        scores.append(float((smap * weight).sum() / weight.sum().clamp_min(1.0)))
    similarity = max(0.0, min(1.0, sum(scores) / len(scores)))
    return 100.0 * similarity * (1.0 - shading_weight * max(0.0, min(1.0, shading)))


def target_description(shading_weight: float) -> str:
    """What a score trained on this target means, for model cards."""
    shading = (f", times 1 - {shading_weight:g} x the smooth bias-field severity"
               if shading_weight else "")
    return (f"physics-derived reference quality (SSIM to the clean original{shading}, 0..100), "
            "not an expert rating")


def trained_shading_weight(card: dict[str, Any]) -> float:
    """The shading weight of the target a weights folder was pre-trained on (its model card's
    recipe; 0 for cards without one: weights from before the key existed, and fine-tuned
    weights, whose score is an expert's and not this target)."""
    recipe = card.get("training", {}).get("run_config", {}).get("data", {})
    return float(recipe.get("shading_weight", 0.0))


def shading_of(severities: Sequence[float] | np.ndarray | torch.Tensor,
               simulators: Sequence[str]) -> float:
    """The bias-family entry of a severity vector (PHYSICAL_FAMILIES order) when one of the
    `simulators` (registry names) that made the image is a smooth field, else 0.

    Why not every bias: an ultrasound TGC error is a gain ramp in depth on the log-compressed
    display, which darkens and clips tissue that SSIM already sees (an SSIM-only target of
    about 66-74 at full severity); pricing it again would count it twice. Each modality has one
    bias simulator, so the combined bias severity of a chain that holds a smooth field is that
    field's.
    """
    from mediqa_train.degrade import REGISTRY

    if not any(REGISTRY[name].smooth_field for name in simulators):
        return 0.0
    return float(severities[PHYSICAL_FAMILIES.index("bias")])
