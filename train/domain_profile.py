"""Fit the out-of-domain references (`mediqa_cli.domain`) on a corpus; save them with weights.

The corpus' train split gives the reference points and its val + test splits the threshold, so
the threshold is measured on slices of sources the references never saw (splits are by source).
At most `max_per_modality` slices per split and modality, evenly spaced, keep MR's thousand
slices from outweighing the cost of the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
from mediqa_train.batches import to_reader_layout
from mediqa_train.pretrain import load_pool

from mediqa_cli.domain import DEFAULT_K, DEFAULT_QUANTILE, DomainCheck, fit_domain
from mediqa_cli.physics import slice_physics


def corpus_measures(corpus: str | Path, splits: tuple[str, ...], max_per_modality: int,
                    modalities: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """(n, F) physics measures per modality (only `modalities`, if given) over the given corpus
    splits."""
    by_modality: dict[str, list] = {}
    for split in splits:
        pool = load_pool(str(corpus), split)
        for modality in sorted({item.modality for item in pool}):
            if modalities is not None and modality not in modalities:
                continue
            items = [item for item in pool if item.modality == modality]
            step = max(1, len(items) // max_per_modality)
            by_modality.setdefault(modality, []).extend(
                slice_physics(to_reader_layout(item.image), modality) for item in items[::step])
    return {m: np.stack(rows) for m, rows in by_modality.items()}


def fit_on_corpus(corpus: str | Path, out: str | Path, k: int = DEFAULT_K,
                  quantile: float = DEFAULT_QUANTILE, max_per_modality: int = 300,
                  echo: Callable[[str], None] | None = print) -> DomainCheck:
    """References from the train split, threshold from val + test; written to out/domain.json."""
    train = corpus_measures(corpus, ("train",), max_per_modality)
    held_out = corpus_measures(corpus, ("val", "test"), max_per_modality)
    check = fit_domain(train, held_out, k, quantile)
    path = check.save(out)
    if echo:
        counts = ", ".join(f"{m} {len(x)}/{len(held_out.get(m, []))}"
                           for m, x in sorted(train.items()))
        echo(f"references/held-out slices: {counts}; k {k}, threshold {check.threshold:.2f} "
             f"(the {quantile:.0%} quantile of held-out distances) -> {path}")
    return check


__all__ = ["corpus_measures", "fit_on_corpus"]
