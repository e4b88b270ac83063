"""Does a network read our own simulators, on crops like those it was trained on?

For each simulator of a modality, ladders of the corpus's crops (`mediqa_train.ladders
.LadderSet`: the clean crop and five rising severities, the crops a training run validates on)
are read by the network and by the pre-training target (SSIM-based,
`mediqa_train.quality.reference_quality`); the table gives both mean within-ladder SRCCs. A
simulator that the target orders and the network does not is one training failed to teach; on
the train split as well as the val split it is under-fitting, not a question of unseen patients.

No stick ladders here: these are our own simulators, so a high figure says nothing about other
projects' degradations (`mediqa-train evaluate` does that).

Usage:
    python benchmarks/own_simulators.py --weights weights --corpus corpus --modality MR \\
        [--split val|train] [--per-modality 24] [--seed 3] [--config shipped]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from mediqa_train.batches import BatchRecipe
from mediqa_train.config import RunConfig
from mediqa_train.ladders import LadderSet, SimulatorReading
from mediqa_train.pretrain import load_pool

from mediqa_cli.model.weights import load_weights


def readings(weights: Path, pool: Sequence, modalities: Sequence[str], per_modality: int,
             seed: int, config: str) -> list[SimulatorReading]:
    """The table's rows: `per_modality` crops of each modality, laddered by every simulator."""
    run = RunConfig.load(config)
    recipe = BatchRecipe(**{**asdict(run.data), "flip_rotate": False})
    chosen = [s for s in pool if s.modality in modalities]
    if not chosen:
        raise SystemExit(f"no slices of {', '.join(modalities)} in this split")
    model, _ = load_weights(weights)
    ladders = LadderSet(chosen, model.config, recipe, per_modality, seed)
    return ladders.by_simulator(model, torch.device("cpu"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--corpus", type=Path, default=Path("corpus"))
    parser.add_argument("--modality", action="append", required=True)
    parser.add_argument("--split", choices=("val", "train"), default="val")
    parser.add_argument("--per-modality", type=int, default=24)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--config", default="shipped", help="run config whose crops to use")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    pool = load_pool(str(args.corpus), args.split)
    rows = readings(args.weights, pool, args.modality, args.per_modality, args.seed,
                    args.config)
    print(f"weights {args.weights}, corpus {args.corpus} ({args.split} split), "
          f"{args.per_modality} crops a modality, seed {args.seed}")
    print(f"{'modality':<9} {'family':<14} {'simulator':<22} {'ladders':>7} "
          f"{'network':>8} {'target':>7}")
    for r in rows:
        print(f"{r.modality:<9} {r.family:<14} {r.simulator:<22} {r.ladders:>7} "
              f"{r.model_srcc:>+8.3f} {r.target_srcc:>+7.3f}")


if __name__ == "__main__":
    main()
