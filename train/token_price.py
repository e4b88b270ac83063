"""Set the token prices that `mediqa_cli.physics_head` adds after the readers and floors.

Centre and scale: the median and SD of the measure over the modality's clean corpus slices (every
split of the corpus the weights were trained on, so never a patient of the held-out fold). Price:
a registered number of logits per clean SD (0.5 for MR's `bias`, candidate TP in
`benchmarks/results/preregistered_candidates_session31.md`). Nothing is fitted on ladders: a
price says how much a fault the network barely reads should cost, which no ladder of ours
measures (our fields are priced by a target that sees them faintly).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mediqa_train.physics_head import kept_clauses

from mediqa_cli.physics import PHYSICS_FEATURES
from mediqa_cli.physics_head import PhysicsHead, TokenPrice

SPLITS = ("train", "val", "test")
CLAUSE = "token prices "  # how a prices clause of `fitted_on` begins; `with_prices` reads it


def price_for(values: np.ndarray, measure: str, per_sd: float) -> TokenPrice:
    """The price from one modality's clean values of `measure`: centred on their median,
    `per_sd` logits per SD of them."""
    clean = np.asarray(values, dtype=np.float64)
    clean = clean[np.isfinite(clean)]
    if clean.size < 2 or not clean.std() > 0:
        raise ValueError(f"too few distinct clean values of {measure} to scale a price by")
    if not per_sd >= 0:
        raise ValueError(f"a price per SD must be non-negative, got {per_sd}")
    return TokenPrice(measure, float(np.median(clean)), per_sd / float(clean.std()))


def fit_prices(corpus: str | Path, modalities: Sequence[str], measure: str,
               per_sd: float) -> tuple[dict[str, TokenPrice], str]:
    """Prices on `measure` for `modalities` from every split of `corpus`, and a line saying
    where they came from."""
    from mediqa_train.domain_profile import corpus_measures

    if measure not in PHYSICS_FEATURES:
        raise ValueError(f"unknown measure {measure!r}; one of {', '.join(PHYSICS_FEATURES)}")
    found = corpus_measures(corpus, SPLITS, max_per_modality=1_000_000, modalities=modalities)
    column = PHYSICS_FEATURES.index(measure)
    prices, counts = {}, []
    for modality in modalities:
        if modality not in found:
            raise ValueError(f"no {modality} slices in {corpus}")
        values = found[modality][:, column]
        prices[modality] = price_for(values, measure, per_sd)
        counts.append(f"{modality} {int(np.isfinite(values).sum())} of {len(values)}")
    fitted_on = (f"{CLAUSE}{', '.join(modalities)}: {per_sd:g} logits per SD of {measure} from "
                 f"its median, over the clean slices of {Path(corpus).name} ({', '.join(counts)})")
    return prices, fitted_on


def with_prices(head: PhysicsHead | None, prices: dict[str, TokenPrice],
                fitted_on: str) -> PhysicsHead:
    """`head` (or an empty one) with `prices` in place of its prices for those modalities; its
    `fitted_on` keeps every clause but an earlier prices clause for only those modalities."""
    if head is None:
        return PhysicsHead({}, fitted_on=fitted_on, prices=prices)
    kept = kept_clauses(head.fitted_on, CLAUSE, set(prices))
    return PhysicsHead(head.readers, head.features, "; ".join([*kept, fitted_on]),
                       floors=head.floors, prices=head.prices | prices)


__all__ = ["fit_prices", "price_for", "with_prices"]
