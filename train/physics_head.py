"""Fit the physics-token reader that `mediqa_cli.physics_head` adds to the network's logit.

Data: per modality, `groups` images of each training fold (never the held-out one), each made
into a ladder by every simulator registered for that modality (`mediqa_train.ladders
.simulator_ladder`: the clean slice and five rising severities). Per step, the tokens as the
scorer measures them (`mediqa_cli.physics.slice_physics` on the slice in its own units) and the
network's logit (the weights scored without a reader).

Fit: an L2-regularised pairwise logistic ranker on the standardised tokens, no intercept: along
every ladder each step should rank below the ones before it. Only the order counts, not what
the pre-training target says a step costs, which is how it learns faults the target prices at
almost nothing (our MR bias fields). Its term is then scaled so that its spread over the
fitting slices is `share` times the network logit's spread there, and shifted so the clean
steps' median term is zero. `clean_spread` > 0 also penalises the term's variance over the
clean steps, so that it prices faults rather than what a clean scan is (v0.9.0's readers were
fitted without it; candidate PH3 in `benchmarks/results/preregistered_candidates_2026-12-06.md`
is its trial).

Why not fit the term on top of the network's logit (a residual ranker): tried on MR (fold-1
stick ladders, `benchmarks/RESULTS.md`), it learns whatever our simulators show that the network
misses, our ghosting's token signature included, and read other projects' ghosting at 0.26
where the network alone reads 0.83. A fixed share keeps the network's reading where it holds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize

from mediqa_cli.calibration import raw_logit
from mediqa_cli.physics import PHYSICS_FEATURES, slice_physics
from mediqa_cli.physics_head import PhysicsHead, TokenReader

if TYPE_CHECKING:
    from mediqa_train.evaluate import WeightSet


@dataclass(frozen=True)
class TokenLadder:
    """One simulator's ladder on one image: tokens (steps, features) and network logits."""

    modality: str
    simulator: str
    tokens: np.ndarray
    logits: np.ndarray


def token_moments(stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the mean and standard deviation over rows that have a value, 0 for a column
    with none (a token missing on every slice has no mean)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nan_to_num(np.nanmean(stacked, axis=0)),
                np.nan_to_num(np.nanstd(stacked, axis=0)))


def fit_ranker(ladders: Sequence[np.ndarray], l2: float = 10.0,
               clean_spread: float = 0.0) -> TokenReader:
    """A reader whose term falls along every ladder (rows: clean first, then rising severity):
    standardised tokens (NaN -> the mean), weights from the L2 pairwise logistic loss.

    `clean_spread` > 0 adds a penalty on the variance of the term over the ladders' clean
    slices (weighted like that many pairs per slice): a term that differs between clean images
    prices what a scan is (its field of view, its background) rather than a fault, and shifts
    whole sources up or down (`benchmarks/reader_terms.py`)."""
    stacked = np.concatenate(ladders)
    mean, spread_of_tokens = token_moments(stacked)
    scale = spread_of_tokens + 1e-6
    reader = TokenReader(mean, scale, np.zeros(stacked.shape[1]))
    pairs = []
    for tokens in ladders:
        z = reader.standardise(tokens)
        pairs += [z[j] - z[i] for i in range(len(z)) for j in range(i + 1, len(z))]
    diff = np.asarray(pairs)
    clean = np.array([reader.standardise(tokens[:1])[0] for tokens in ladders])
    clean -= clean.mean(axis=0)
    spread = clean_spread * len(diff) / len(clean) * (clean.T @ clean)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        margin = diff @ w  # > 0 when the worse step (j) gets the larger w . z
        p = np.exp(-np.logaddexp(0.0, margin))  # sigmoid(-margin)
        value = float(np.logaddexp(0.0, -margin).sum() + 0.5 * l2 * w @ w
                      + 0.5 * w @ spread @ w)
        return value, -(diff * p[:, None]).sum(0) + l2 * w + spread @ w

    weights = minimize(loss, np.zeros(diff.shape[1]), jac=True, method="L-BFGS-B").x
    return TokenReader(mean, scale, weights)


def reader_beside(ladders: Sequence[TokenLadder], share: float, l2: float = 10.0,
                  clean_spread: float = 0.0) -> TokenReader:
    """The ranker of these ladders, its spread `share` x the network logit's, clean median 0."""
    ranker = fit_ranker([ladder.tokens for ladder in ladders], l2, clean_spread)
    terms = np.concatenate([ranker.term(ladder.tokens) for ladder in ladders])
    logits = np.concatenate([ladder.logits for ladder in ladders])
    finite = np.isfinite(logits)
    spread = float(np.std(terms[finite]))
    if spread <= 0 or finite.sum() < 2:
        raise ValueError("the ranker's term does not vary on the fitting slices")
    factor = share * float(np.std(logits[finite])) / spread
    scaled = TokenReader(ranker.mean, ranker.scale, ranker.weights * factor)
    clean = np.median([scaled.term(ladder.tokens[:1])[0] for ladder in ladders])
    return TokenReader(scaled.mean, scaled.scale, scaled.weights, offset=float(clean))


def collect_ladders(network: WeightSet, modality: str, entries: Sequence, groups: int,
                    seed: int, cache: Path, mirror: Path | None,
                    echo: Callable[[str], None] = print,
                    simulators: Sequence[str] | None = None) -> list[TokenLadder]:
    """Each simulator (default: every one registered for `modality`) on `groups` images of each
    fold in `entries`, scored by `network` (weights loaded without their reader)."""
    from mediqa_train import evaluate as ev
    from mediqa_train.degrade import REGISTRY
    from mediqa_train.ladders import simulator_ladder

    if simulators is None:
        simulators = [name for name, sim in REGISTRY.items() if modality in sim.modalities]
    out: list[TokenLadder] = []
    for fold in sorted({e.fold for e in entries}):
        for entry in ev.pick_images([e for e in entries if e.fold == fold], groups, [modality]):
            image = ev.load_image(entry, cache, mirror)
            for name in simulators:
                steps = simulator_ladder(image.pixels, image.spacing, name, seed)
                tokens = np.array([slice_physics(s, modality) for s in steps])
                scores = [ev._score_of(r) for r in network.score(steps, image,
                                                                  f"{entry.group}/{name}")]
                out.append(TokenLadder(modality, name, tokens, raw_logit(np.array(scores))))
        echo(f"{modality}: fold {fold}, {len(out)} ladders")
    return out


def fit_head(weights: Path, manifest: Path, modalities: Sequence[str], holdout_fold: int,
             groups: int, share: float, seed: int, cache: Path, mirror: Path | None,
             echo: Callable[[str], None] = print, clean_spread: float = 0.0,
             keep: PhysicsHead | None = None) -> PhysicsHead:
    """A reader per modality, fitted on the training folds' images (never `holdout_fold`);
    the readers of `keep` for other modalities, and its exposure floors, are kept as they are."""
    from mediqa_train.evaluate import WeightSet
    from mediqa_train.manifest import read_manifest

    entries = [e for e in read_manifest(manifest) if e.fold != holdout_fold]
    network = WeightSet("network", weights, physics_head=False)  # loaded once for every modality
    readers = {}
    for modality in modalities:
        ladders = collect_ladders(network, modality, entries, groups, seed, cache, mirror, echo)
        if not ladders:
            raise ValueError(f"no {modality} images on the training folds of {manifest}")
        readers[modality] = reader_beside(ladders, share, clean_spread=clean_spread)
    folds = sorted({e.fold for e in entries})
    fitted_on = (f"{', '.join(modalities)}: our simulators' ladders on {groups} images per fold "
                 f"of folds {','.join(map(str, folds))} ({manifest.name}), seed {seed}, share "
                 f"{share}" + (f", clean spread {clean_spread}" if clean_spread else ""))
    if keep is not None:
        kept = {m: r for m, r in keep.readers.items() if m not in readers}
        if kept:
            readers = kept | readers
            fitted_on = f"{fitted_on}; kept {', '.join(sorted(kept))} from {keep.fitted_on}"
    return PhysicsHead(readers, PHYSICS_FEATURES, fitted_on,
                       floors=dict(keep.floors) if keep is not None else {})
