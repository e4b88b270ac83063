"""Training batches: real clean slices, degraded on the fly, preprocessed and packed like inference.

Every training example is built by the same code the scorer runs (`mediqa_cli.preprocess`
normalise + native-resolution patchify, `mediqa_cli.saliency.select_patches`,
`mediqa_cli.model.packing.pack`), so the network never sees a token layout in training that it
will not see in `mediqa score`. What is training-only happens before that, on the image in
physical units:

1. pick a clean slice (modalities drawn uniformly, so the few NM images weigh as much as MR);
2. rescale it by a random factor (spacing follows) and take a random crop of random size and
   aspect (or, sometimes, the whole slice, whose patches are then selected by saliency as in
   `mediqa score`), so the model meets many resolutions, fields of view and grid shapes;
3. with probability `clean_fraction` keep it clean (all severities 0, quality 100); otherwise
   apply a random chain of physics simulators for that modality (`mediqa_train.degrade.draw`)
   and label it with the chain's per-family severities and the full-reference quality target
   (`mediqa_train.quality.reference_quality`, SSIM to the clean crop, 0..100, times the
   shading term when `shading_weight` > 0);
4. build the prompt with random metadata dropout: modality and anatomy each say "unknown" with
   probability `metadata_dropout`, so the context head learns to stand in for missing tags.

`BatchStream` is an IterableDataset that packs such examples into batches under a token budget;
run it in a DataLoader worker so degradation overlaps with the training step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset, get_worker_info

from mediqa_cli.model.config import ModelConfig, checked_keys
from mediqa_cli.model.packing import PackedBatch, pack, sequence_tokens
from mediqa_cli.model.prompts import PromptRequest
from mediqa_cli.preprocess import DEFAULT_MAX_PATCHES, SliceTokens
from mediqa_cli.taxonomy import ANATOMIES, MODALITIES, PHYSICAL_FAMILIES

SOURCE_TRAINING = "training"


class CleanSlice(Protocol):
    """One real slice in the reader's physical units, as the degradation simulators take it
    (`mediqa_train.corpus.CorpusItem` is one).

    image: float32 (H, W) grey (CT in HU) or (3, H, W) colour 0..255; spacing: (row, col) mm per
    pixel; modality/anatomy: taxonomy names; source: the file it came from (splits are by source).
    """

    @property
    def image(self) -> torch.Tensor: ...
    @property
    def spacing(self) -> tuple[float, float]: ...
    @property
    def modality(self) -> str: ...
    @property
    def anatomy(self) -> str: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class BatchRecipe:
    """How examples are drawn and packed (part of a training config JSON, key "data")."""

    crop_min: int = 48  # px, each side
    crop_max: int = 192
    ct_crop_max: int = 128  # CT simulators project and back-project: cost grows as side^3
    min_scale: float = 0.25  # random downscale of the slice before cropping (spacing follows)
    full_image_fraction: float = 0.2  # whole (rescaled) slices, as `mediqa score` sees them
    clean_fraction: float = 0.15
    max_chain: int = 3
    metadata_dropout: float = 0.5
    expert_task_fraction: float = 0.5  # share of examples prompted "expert" (same target)
    max_tokens: int = 2048  # per packed batch, queries included
    exclude_families: tuple[str, ...] = ()  # held-out-family experiment: never simulate these
    group_size: int = 1  # > 1: versions of one crop at rising severity (see `ExampleMaker.group`)
    flip_rotate: bool = False  # random 90-degree rotations and flips of the clean crop
    # Share of the quality target a full-severity smooth bias field costs (0.35 is
    # quality.SHADING_WEIGHT); 0 keeps the SSIM-only target of the weights up to v0.2.0.
    shading_weight: float = 0.0
    # "simulator:MODALITY" entries: simulators outside the shipped chains (`in_training` False)
    # that this recipe draws for that modality (candidate H: photographic noise on histology).
    added_simulators: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.shading_weight <= 1.0:
            raise ValueError(f"shading_weight must lie in [0, 1], got {self.shading_weight}")
        from mediqa_train.degrade import candidates

        for entry in self.added_simulators:
            name, _, modality = entry.partition(":")
            candidates(modality, (name,))  # refuses an unknown simulator or modality

    def added_for(self, modality: str) -> tuple[str, ...]:
        """The added simulators this recipe draws for `modality`."""
        return tuple(name for name, _, m in (e.partition(":") for e in self.added_simulators)
                     if m == modality)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRecipe:
        """Strict about unknown keys; options removed after their trials are accepted at the
        value every shipped run used (old run configs and model cards hold them)."""
        data = checked_keys(cls, data, RETIRED_RECIPE_KEYS, "data recipe")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# Options whose trials lost (benchmarks/RESULTS.md), with the value every shipped run used.
RETIRED_RECIPE_KEYS: dict[str, Any] = {"modality_weighting": "uniform", "content_mix": 0.0,
                                       "borrowed_rank_only": False, "full_level_step": False,
                                       # now the model config's, saved with the weights:
                                       "max_patches": DEFAULT_MAX_PATCHES, "keep_patches": 256}


@dataclass
class Example:
    """One preprocessed training slice and its labels."""

    tokens: SliceTokens
    prompt: PromptRequest
    severities: np.ndarray  # (F,) float32 in 0..1, order of PHYSICAL_FAMILIES
    quality: float  # 0..100
    modality_id: int
    anatomy_id: int
    source: str
    chain: list[str] = field(default_factory=list)
    group: int = -1  # examples sharing a group id are versions of one clean crop


@dataclass
class TrainBatch:
    """A packed batch plus its per-slice targets."""

    packed: PackedBatch
    severities: torch.Tensor  # (S, F)
    quality: torch.Tensor  # (S,)
    modality: torch.Tensor  # (S,) int64 true modality id
    anatomy: torch.Tensor  # (S,) int64 true anatomy id
    group: torch.Tensor | None = None  # (S,) int64, versions of one crop share an id (-1: none)

    @property
    def n_slices(self) -> int:
        return self.packed.n_slices

    @property
    def n_patches(self) -> int:
        return int(self.packed.patches.shape[0])

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(self.packed.to(device), self.severities.to(device),
                          self.quality.to(device), self.modality.to(device),
                          self.anatomy.to(device),
                          None if self.group is None else self.group.to(device))


# --------------------------------------------------------------------------- image helpers

def to_reader_layout(image: torch.Tensor) -> np.ndarray:
    """(H, W) or (3, H, W) torch -> (H, W) or (H, W, 3) numpy, the layout `normalise` takes."""
    arr = image.detach().cpu().float()
    if arr.dim() == 3:
        arr = arr.permute(1, 2, 0)
    return np.ascontiguousarray(arr.numpy())


def rescale(image: torch.Tensor, spacing: tuple[float, float], factor: float
            ) -> tuple[torch.Tensor, tuple[float, float]]:
    """Area-antialiased downscale by `factor` (<= 1); the spacing grows by the same factor."""
    if factor >= 0.999:
        return image, spacing
    chw = image[None] if image.dim() == 2 else image
    h, w = chw.shape[-2:]
    nh, nw = max(8, round(h * factor)), max(8, round(w * factor))
    out = F.interpolate(chw[None], size=(nh, nw), mode="bilinear", antialias=True,
                        align_corners=False)[0]
    out = out[0] if image.dim() == 2 else out
    return out.contiguous(), (spacing[0] * h / nh, spacing[1] * w / nw)


def random_crop(image: torch.Tensor, rng: np.random.Generator, lo: int, hi: int) -> torch.Tensor:
    """A crop with each side uniform in [lo, hi] (clipped to the image) at a random position."""
    h, w = image.shape[-2:]
    ch = int(rng.integers(min(lo, h), min(hi, h) + 1))
    cw = int(rng.integers(min(lo, w), min(hi, w) + 1))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return image[..., y:y + ch, x:x + cw].contiguous()


def flip_rotate(image: torch.Tensor, spacing: tuple[float, float], rng: np.random.Generator
                ) -> tuple[torch.Tensor, tuple[float, float]]:
    """One of the 8 rotations/reflections of the square (spacing swaps with a quarter turn).

    Applied to the clean crop before any simulator, so the physics of the artefact is untouched
    (ghosts still run along the phase axis of the degraded image); it multiplies the views of a
    few hundred slices without inventing content.
    """
    turns = int(rng.integers(4))
    out = torch.rot90(image, turns, dims=(-2, -1)) if turns else image
    if rng.random() < 0.5:
        out = torch.flip(out, dims=(-1,))
    if turns % 2:
        spacing = (spacing[1], spacing[0])
    return out.contiguous(), spacing


def tokens_for(image: torch.Tensor, modality: str, spacing: tuple[float, float],
               config: ModelConfig, seed: int = 0) -> SliceTokens:
    """Physical-unit slice -> patch tokens by the inference path (`SlicePreparer.slice_tokens`:
    normalise, patchify, physics, select), with the preprocessing settings of `config`."""
    from mediqa_cli.scoring import SlicePreparer

    return SlicePreparer(config).slice_tokens([to_reader_layout(image)], modality, spacing,
                                              None, [seed])[0]


def prompt_for(modality: str, anatomy: str, config: ModelConfig, task: str,
               drop_modality: bool, drop_anatomy: bool) -> PromptRequest:
    """Prompt ids with optional dropout to the "unknown" row (the context head then decides)."""
    mod = config.unknown_modality if drop_modality else config.modalities.index(modality)
    ana = config.unknown_anatomy if drop_anatomy else config.anatomies.index(anatomy)
    return PromptRequest(mod, "none" if drop_modality else SOURCE_TRAINING,
                         ana, "none" if drop_anatomy else SOURCE_TRAINING,
                         config.tasks.index(task))


# --------------------------------------------------------------------------- examples

class ExampleMaker:
    """Draws training examples from a pool of clean slices (see module docstring)."""

    def __init__(self, pool: Sequence[CleanSlice], config: ModelConfig, recipe: BatchRecipe):
        if not pool:
            raise ValueError("the training pool is empty")
        self.pool = list(pool)
        self.config = config
        self.recipe = recipe
        by_mod: dict[str, dict[str, list[int]]] = {}
        for i, s in enumerate(self.pool):
            if s.modality not in MODALITIES or s.anatomy not in ANATOMIES:
                raise ValueError(f"{s.source}: unknown modality/anatomy {s.modality}/{s.anatomy}")
            by_mod.setdefault(s.modality, {}).setdefault(s.source, []).append(i)
        # Sorted, so a seed picks the same slices whatever order the pool was loaded in.
        self.by_modality = {m: [by_mod[m][k] for k in sorted(by_mod[m])] for m in sorted(by_mod)}

    def draw_clean(self, rng: np.random.Generator) -> tuple[torch.Tensor, tuple[float, float],
                                                            CleanSlice]:
        """A random rescaled crop of a random slice: modality, then source, then slice, each
        uniform, because slice counts differ a hundredfold between sources."""
        mods = list(self.by_modality)
        src = self._slice_of(mods[int(rng.integers(len(mods)))], rng)
        r = self.recipe
        hi = r.ct_crop_max if src.modality == "CT" else r.crop_max
        h, w = src.image.shape[-2:]
        # Never shrink below the smallest crop; the lower bound is log-uniform.
        floor = max(r.min_scale, min(1.0, r.crop_min / max(1, min(h, w))))
        factor = math.exp(rng.uniform(math.log(floor), 0.0)) if floor < 1 else 1.0
        if rng.random() < r.full_image_fraction:
            # The whole slice; CT is shrunk to its crop cap (projection cost grows as side^3).
            factor = min(factor, hi / max(h, w)) if src.modality == "CT" else factor
            image, spacing = rescale(src.image, src.spacing, factor)
            return image.contiguous(), spacing, src
        image, spacing = rescale(src.image, src.spacing, factor)
        image = random_crop(image, rng, r.crop_min, hi)
        if r.flip_rotate:
            image, spacing = flip_rotate(image, spacing, rng)
        return image, spacing, src

    def _slice_of(self, modality: str, rng: np.random.Generator) -> CleanSlice:
        sources = self.by_modality[modality]
        idx = sources[int(rng.integers(len(sources)))]
        return self.pool[idx[int(rng.integers(len(idx)))]]

    def choose_chain(self, modality: str, gen: torch.Generator,
                     severity: float | None = None) -> Any:
        """A random simulator chain for the modality that spares `exclude_families` (None when
        eight draws all touched one)."""
        from mediqa_train.degrade import draw

        for _ in range(8):
            chain = draw(modality, gen, max_steps=self.recipe.max_chain, severity=severity,
                         added=self.recipe.added_for(modality))
            sev = chain.severities
            if not any(sev[f] > 0 for f in self.recipe.exclude_families):
                return chain
        return None

    def degrade(self, clean: torch.Tensor, spacing: tuple[float, float], modality: str,
                gen: torch.Generator, severity: float | None = None,
                keys: Sequence[str] | None = None) -> tuple[torch.Tensor, np.ndarray, list[str]]:
        """A random chain (or the given simulators) -> (image, severities (F,), chain names)."""
        from mediqa_train.degrade import REGISTRY, Chain

        if keys is not None:
            chain = Chain([(REGISTRY[k], REGISTRY[k].sample(gen, severity)) for k in keys])
        else:
            chain = self.choose_chain(modality, gen, severity)
            if chain is None:
                return clean, np.zeros(len(PHYSICAL_FAMILIES), np.float32), []
        # Simulators need a physical scale: unknown spacing (PNG, .npy) counts as 1 mm, as in
        # `mediqa-train degrade`; the tokens still say "unknown".
        scale = tuple(v if math.isfinite(v) and v > 0 else 1.0 for v in spacing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = chain.apply(clean, scale, gen)
        image = torch.nan_to_num(image.float())
        return image, chain.severity_vector().numpy(), [sim.name for sim, _ in chain.steps]

    def example(self, rng: np.random.Generator, gen: torch.Generator) -> Example:
        """One training example: crop, maybe degrade, label, tokenise, prompt."""
        from mediqa_train.quality import reference_quality, shading_of

        clean, spacing, src = self.draw_clean(rng)
        r = self.recipe
        if rng.random() < r.clean_fraction:
            image, names, quality = clean, [], 100.0
            sev = np.zeros(len(PHYSICAL_FAMILIES), np.float32)
        else:
            image, sev, names = self.degrade(clean, spacing, src.modality, gen)
            quality = 100.0 if not names else reference_quality(
                clean, image, src.modality, shading=shading_of(sev, names),
                shading_weight=r.shading_weight)
        prompt = self._prompt(src, rng)
        tokens = tokens_for(image, src.modality, spacing, self.config,
                            seed=int(rng.integers(1 << 31)))
        return Example(tokens, prompt, sev.astype(np.float32), float(quality),
                       self.config.modalities.index(src.modality),
                       self.config.anatomies.index(src.anatomy), src.source, names)

    def _prompt(self, src: CleanSlice, rng: np.random.Generator) -> PromptRequest:
        """Task and metadata prompt with dropout."""
        r = self.recipe
        task = "expert" if rng.random() < r.expert_task_fraction else "physical"
        drop_modality = bool(rng.random() < r.metadata_dropout)
        drop_anatomy = bool(rng.random() < r.metadata_dropout)
        return prompt_for(src.modality, src.anatomy, self.config, task, drop_modality,
                          drop_anatomy)

    def group(self, rng: np.random.Generator, gen: torch.Generator, group_id: int
              ) -> list[Example]:
        """`group_size` versions of one clean crop: the same simulator chain with the same
        random pattern (seeds) at rising severity, sometimes led by the clean crop itself.

        Why: content is then held constant within the group, so a ranking loss over its
        versions teaches exactly what changes with the artefact's strength (RankIQA's idea:
        Liu, van de Weijer & Bagdanov, ICCV 2017), which is what a severity ladder measures.
        """
        from mediqa_train.degrade import REGISTRY, Chain
        from mediqa_train.quality import foreground_mask, reference_quality, shading_of

        r = self.recipe
        clean, spacing, src = self.draw_clean(rng)
        scale = tuple(v if math.isfinite(v) and v > 0 else 1.0 for v in spacing)
        chain0 = self.choose_chain(src.modality, gen)
        keys = [] if chain0 is None else [sim.name for sim, _ in chain0.steps]
        prompt = self._prompt(src, rng)
        levels = np.sort(rng.uniform(0.05, 1.0, r.group_size))
        if not keys or rng.random() < r.clean_fraction:
            levels[0] = 0.0
        strengths = rng.uniform(0.5, 1.0, len(keys))
        step_seeds = [int(v) for v in rng.integers(1 << 62, size=len(keys))]
        apply_seed = int(rng.integers(1 << 62))
        mask = foreground_mask(clean, src.modality)
        out = []
        for level in levels:
            sev = np.zeros(len(PHYSICAL_FAMILIES), np.float32)
            image, quality = clean, 100.0
            if level > 0 and keys:
                chain = Chain([(REGISTRY[k], REGISTRY[k].sample(
                    torch.Generator().manual_seed(seed), float(min(1.0, level * a))))
                    for k, seed, a in zip(keys, step_seeds, strengths)])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    image = torch.nan_to_num(chain.apply(
                        clean, scale, torch.Generator().manual_seed(apply_seed)).float())
                sev = chain.severity_vector().numpy()
                quality = reference_quality(clean, image, src.modality, mask,
                                            shading_of(sev, keys), r.shading_weight)
            tokens = tokens_for(image, src.modality, spacing, self.config,
                            seed=int(rng.integers(1 << 31)))
            out.append(Example(tokens, prompt, sev.astype(np.float32), float(quality),
                               self.config.modalities.index(src.modality),
                               self.config.anatomies.index(src.anatomy), src.source,
                               keys if level > 0 else [], group_id))
        return out


def collate(examples: Sequence[Example], config: ModelConfig) -> TrainBatch:
    """Pack examples exactly as the engine packs slices, with their targets alongside."""
    packed = pack([e.tokens for e in examples], [e.prompt for e in examples], config)
    return TrainBatch(
        packed,
        torch.from_numpy(np.stack([e.severities for e in examples])),
        torch.tensor([e.quality for e in examples], dtype=torch.float32),
        torch.tensor([e.modality_id for e in examples], dtype=torch.int64),
        torch.tensor([e.anatomy_id for e in examples], dtype=torch.int64),
        torch.tensor([e.group for e in examples], dtype=torch.int64),
    )


class BatchStream(IterableDataset):
    """Endless packed batches of fresh examples, each under `recipe.max_tokens` tokens.

    Seeded: worker w of a stream seeded s draws from seed (s, w), so a run is reproducible for a
    given worker count; a resumed run passes its step as part of the seed (fresh, not replayed,
    examples: the resumed run is seeded, though not identical to an uninterrupted one).
    """

    def __init__(self, pool: Sequence[CleanSlice], config: ModelConfig, recipe: BatchRecipe,
                 seed: int) -> None:
        super().__init__()
        self.maker = ExampleMaker(pool, config, recipe)
        self.config = config
        self.recipe = recipe
        self.seed = seed

    def __iter__(self) -> Iterator[TrainBatch]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None:
            torch.set_num_threads(1)  # the training step owns the other cores
        rng = np.random.default_rng([self.seed, worker])
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
        pending: list[Example] = []
        next_group = 0
        while True:
            batch = pending
            used = sum(sequence_tokens(e.tokens.n_tokens, self.config) for e in batch)
            pending = []
            while True:
                if self.recipe.group_size > 1:
                    unit = self.maker.group(rng, gen, next_group)
                    next_group += 1
                else:
                    unit = [self.maker.example(rng, gen)]
                cost = sum(sequence_tokens(e.tokens.n_tokens, self.config) for e in unit)
                if batch and used + cost > self.recipe.max_tokens:
                    pending = unit  # a group is never split across batches
                    break
                batch = batch + unit
                used += cost
            yield collate(batch, self.config)


__all__ = [
    "RETIRED_RECIPE_KEYS",
    "BatchRecipe",
    "BatchStream",
    "CleanSlice",
    "Example",
    "ExampleMaker",
    "TrainBatch",
    "collate",
    "flip_rotate",
    "prompt_for",
    "random_crop",
    "rescale",
    "to_reader_layout",
    "tokens_for",
]
