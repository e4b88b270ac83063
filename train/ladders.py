"""Severity ladders: one clean crop plus the same artefact at rising strength.

A ladder holds the content fixed and changes only the artefact's severity, so the within-ladder
rank correlation of a score measures exactly what an IQA score is for: does it fall as the
artefact grows? `benchmarks/accuracy.py` reports it on the test sources; pre-training tracks it
on the validation sources (`LadderSet`) and keeps the weights of the step where it peaks, because
the random-chain loss keeps falling on a few hundred training slices long after ranking on
unseen sources has stopped improving.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mediqa_train.batches import (
    BatchRecipe,
    CleanSlice,
    Example,
    ExampleMaker,
    prompt_for,
    tokens_for,
)
from mediqa_train.degrade import REGISTRY

from mediqa_cli.evaluation import srcc
from mediqa_cli.model.config import ModelConfig
from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

SEVERITIES = (0.2, 0.4, 0.6, 0.8, 1.0)
# Linear, scale-free simulators tried on modalities they are not registered (trained) for.
UNSEEN: tuple[str, ...] = ("photo_motion_blur", "photo_defocus", "mr_ghosting")


def evaluation_recipe(card: dict[str, Any]) -> BatchRecipe:
    """The recipe `benchmarks/accuracy.py` builds its test ladders with, for weights with this
    card: the library's default crops (48-192 px, whole slices a fifth of the time, no larger
    than the scorer's own budget) whatever the run trained on, so every model meets the same
    ladders, and the physics target the weights were trained on (shading priced or not)."""
    from mediqa_train.quality import trained_shading_weight

    return BatchRecipe(clean_fraction=0.1, shading_weight=trained_shading_weight(card))


def family_simulators(modality: str) -> dict[str, list[str]]:
    """family -> registry keys of the training simulators of that modality that declare the
    family."""
    out: dict[str, list[str]] = defaultdict(list)
    for key in sorted(REGISTRY):
        sim = REGISTRY[key]
        if modality in sim.modalities and sim.in_training:
            for family in sim.families:
                out[family].append(key)
    return {f: out[f] for f in PHYSICAL_FAMILIES if f in out}


def unseen_simulators(modality: str) -> dict[str, list[str]]:
    """family -> `UNSEEN` simulators not registered for the modality."""
    out: dict[str, list[str]] = defaultdict(list)
    for key in UNSEEN:
        sim = REGISTRY.get(key)
        if sim is not None and modality not in sim.modalities:
            for family in sim.families:
                out[family].append(key)
    return dict(out)


@dataclass
class Ladder:
    """The clean image first, then the artefact at each of `SEVERITIES` (one random seed);
    `shading`: each image's smooth-field bias severity (`quality.shading_of`; the physics
    target needs it)."""

    modality: str
    anatomy: str
    family: str
    simulator: str
    source: str
    spacing: tuple[float, float]
    images: list[torch.Tensor]
    shading: list[float]


def clean_crops(pool: Sequence[Any], config: ModelConfig, recipe: BatchRecipe,
                per_modality: int, rng: np.random.Generator
                ) -> Iterator[tuple[str, int, CleanSlice, torch.Tensor, tuple[float, float]]]:
    """(modality, crop index within it, slice, clean crop, spacing) for `per_modality` random
    crops of each modality of `pool`: the crops ladders start from. Lazy, so a caller may draw
    from `rng` between crops (`build_ladders` draws each ladder's seed)."""
    maker = ExampleMaker(pool, config, recipe)
    for modality, sources in maker.by_modality.items():
        indices = [i for idx in sources for i in idx]
        for b in range(per_modality):
            src = maker.pool[indices[int(rng.integers(len(indices)))]]
            clean, spacing, _ = ExampleMaker([src], config, recipe).draw_clean(rng)
            yield modality, b, src, clean, spacing


def simulator_steps(simulator: str, clean: torch.Tensor, spacing: tuple[float, float],
                    seed: int) -> Iterator[tuple[torch.Tensor, Any]]:
    """(degraded image, parameters) for each of `SEVERITIES`: one seed, so every step draws the
    same direction and only the severity grows; a spacing that is not a positive number is 1."""
    sim = REGISTRY[simulator]
    scale = tuple(v if math.isfinite(v) and v > 0 else 1.0 for v in spacing)
    for severity in SEVERITIES:
        gen = torch.Generator().manual_seed(seed)
        params = sim.sample(gen, severity)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = torch.nan_to_num(sim.apply(clean, scale, params, gen).float())
        yield image, params


def as_chw(image: np.ndarray) -> torch.Tensor:
    """Colour slices come from the readers as (H, W, 3); simulators and the target take
    (3, H, W)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    return tensor.permute(2, 0, 1) if image.ndim == 3 else tensor


def simulator_ladder(image: np.ndarray, spacing: tuple[float, float], name: str,
                     seed: int) -> list[np.ndarray]:
    """A reader's slice and `simulator_steps` of it, back in the reader's layout: what the
    benchmarks put beside a stick ladder of the same slice."""
    colour = image.ndim == 3
    return [image] + [(step.permute(1, 2, 0) if colour else step).numpy()
                      for step, _ in simulator_steps(name, as_chw(image), spacing, seed)]


def build_ladders(pool: Sequence[Any], config: ModelConfig, recipe: BatchRecipe,
                  per_modality: int, seed: int, unseen: bool = False) -> list[Ladder]:
    """`per_modality` random crops per modality, each laddered with every family its modality
    has but `recipe.exclude_families` (`unseen`: the `UNSEEN` simulators on modalities they were
    not trained for)."""
    rng = np.random.default_rng([seed, 22 if unseen else 21])
    out = []
    for modality, b, src, clean, spacing in clean_crops(pool, config, recipe, per_modality, rng):
        fams = unseen_simulators(modality) if unseen else family_simulators(modality)
        for family, keys in fams.items():
            if family in recipe.exclude_families:
                continue
            key = keys[b % len(keys)]
            sim = REGISTRY[key]
            images, shading = [clean], [0.0]
            for image, params in simulator_steps(key, clean, spacing, int(rng.integers(1 << 31))):
                images.append(image)
                shading.append(sim.severities(params).get("bias", 0.0)
                               if sim.smooth_field else 0.0)
            out.append(Ladder(modality, src.anatomy, family, key, src.source, spacing,
                              images, shading))
    return out


def example_of(image: torch.Tensor, spacing: tuple[float, float], modality: str, anatomy: str,
               config: ModelConfig, recipe: BatchRecipe, known: bool = True,
               quality: float = math.nan) -> Example:
    """An Example scored as `mediqa score` would (metadata known or removed)."""
    tokens = tokens_for(image, modality, spacing, config, seed=0)
    prompt = prompt_for(modality, anatomy, config, "expert", not known, not known)
    return Example(tokens, prompt, np.zeros(len(config.families), np.float32), quality,
                   config.modalities.index(modality), config.anatomies.index(anatomy), "")


def ladder_examples(ladder: Ladder, config: ModelConfig, recipe: BatchRecipe,
                    known: bool = True) -> list[Example]:
    return [example_of(im, ladder.spacing, ladder.modality, ladder.anatomy, config, recipe,
                       known) for im in ladder.images]


def ladder_srcc(values: Sequence[float]) -> float:
    """SRCC of a ladder's values with quality order (clean first, most severe last)."""
    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(v).all():
        return math.nan
    return srcc(v, -np.arange(v.size, dtype=np.float64))


class LadderSet:
    """Fixed validation ladders, tokenised once, scored by a model in one batched pass.

    Families in `recipe.exclude_families` get no ladder: a held-out-family run must not pick
    its weights by the family it is tested on."""

    def __init__(self, pool: Sequence[Any], config: ModelConfig, recipe: BatchRecipe,
                 per_modality: int, seed: int) -> None:
        self.ladders = build_ladders(pool, config, recipe, per_modality, seed)
        # Metadata removed, as the harder and more common case of a bare PNG or NIfTI.
        self.examples = [e for lad in self.ladders
                         for e in ladder_examples(lad, config, recipe, known=False)]

    def __len__(self) -> int:
        return len(self.ladders)

    def model_srccs(self, model: torch.nn.Module, device: torch.device) -> list[float]:
        """The model's within-ladder SRCC of each ladder, in `self.ladders` order (one batched
        pass; the model's train/eval mode is left as it was)."""
        from mediqa_train.validation import predict

        was_training = model.training
        quality = predict(model, self.examples, device)["quality"]
        model.train(was_training)
        n = len(SEVERITIES) + 1
        return [ladder_srcc(quality[i * n:(i + 1) * n]) for i in range(len(self.ladders))]

    def score(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Mean within-ladder SRCC: over all ladders, and the mean of per-modality means (every
        modality weighs the same: the selection criterion of pre-training)."""
        by_mod: dict[str, list[float]] = defaultdict(list)
        for lad, rho in zip(self.ladders, self.model_srccs(model, device), strict=True):
            by_mod[lad.modality].append(rho)
        per_mod = {m: float(np.nanmean(v)) for m, v in by_mod.items()}
        every = [v for vals in by_mod.values() for v in vals]
        return {"val_ladder_srcc": float(np.nanmean(every)),
                "val_ladder_srcc_modality_mean": float(np.mean(list(per_mod.values()))),
                **{f"val_ladder_srcc_{m}": v for m, v in sorted(per_mod.items())}}

    def by_simulator(self, model: torch.nn.Module, device: torch.device
                     ) -> list[SimulatorReading]:
        """Per (modality, family, simulator): the model's mean within-ladder SRCC beside the
        pre-training target's (`quality.reference_quality`) on the same ladders.

        Why: a simulator whose ladders the target orders but the model does not is one that
        training failed to teach, whatever the measuring stick says about its family
        (`benchmarks/own_simulators.py`)."""
        from mediqa_train.quality import reference_quality

        model_rho: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        target_rho: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for lad, rho in zip(self.ladders, self.model_srccs(model, device), strict=True):
            key = (lad.modality, lad.family, lad.simulator)
            model_rho[key].append(rho)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                target = [reference_quality(lad.images[0], image, lad.modality)
                          for image in lad.images]
            target_rho[key].append(ladder_srcc(target))
        return [SimulatorReading(*key, int(np.isfinite(model_rho[key]).sum()),
                                 float(np.nanmean(model_rho[key])),
                                 float(np.nanmean(target_rho[key])))
                for key in sorted(model_rho)]


@dataclass(frozen=True)
class SimulatorReading:
    """How one simulator's ladders are read: by the model and by the pre-training target
    (`ladders`: those whose model SRCC is defined, the ones its mean is taken over)."""

    modality: str
    family: str
    simulator: str
    ladders: int
    model_srcc: float
    target_srcc: float


__all__ = [
    "SEVERITIES",
    "UNSEEN",
    "SimulatorReading",
    "Ladder",
    "LadderSet",
    "build_ladders",
    "example_of",
    "family_simulators",
    "ladder_examples",
    "ladder_srcc",
    "simulator_steps",
    "unseen_simulators",
]
