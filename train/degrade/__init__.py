"""Physics-informed degradation simulators, one module per modality family.

`REGISTRY` maps a key ("mr_motion", "ct_lowdose", "jpeg", ...) to a simulator with
`sample(rng, severity) -> params`, `apply(image, spacing, params, rng) -> image` and
`severities(params) -> {family: 0..1}`; `draw(modality, rng)` builds a random chain for training.
The corpus builder and the `mediqa-train degrade` CLI are thin layers over these two names.
"""

from . import (  # noqa: F401  (modules register their simulators on import)
    ct,
    generic,
    mr,
    nuclear,
    photographic,
    ultrasound,
    xray,
)
from .base import REGISTRY, Degradation, Spacing
from .chain import Chain, candidates, combine_severities, draw

__all__ = ["REGISTRY", "Chain", "Degradation", "Spacing", "candidates", "combine_severities",
           "draw"]
