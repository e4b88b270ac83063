"""How far the physics-token reader moves real scans that were never degraded.

Why: the reader (`mediqa_cli.physics_head`) is fitted to order the steps of a ladder and is zero
on the median clean slice of the training patients, but its term also varies between clean
images: a source whose measures (field of view, background, EFC) differ from the training
slices' is shifted as a whole. This prints the term, in logit units, on the middle slice of each
scan under the given paths whose modality has a reader; a clean scan far from 0 is one the
reader moves for what it is, not for a fault.

Usage: python benchmarks/reader_terms.py PATH [PATH ...] [--weights weights]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from mediqa_cli.io import Scan, discover
from mediqa_cli.physics import slice_physics
from mediqa_cli.physics_head import PhysicsHead


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    head = PhysicsHead.load(args.weights)
    if head is None:
        parser.error(f"{args.weights}: no physics_head.json")
    print(f"{'modality':<9}{'term':>7}{'floor':>7}  scan")
    for item in discover(args.paths):
        if not isinstance(item, Scan):
            continue
        reader, floor = head.readers.get(item.modality), head.floors.get(item.modality)
        if reader is None and floor is None:
            continue
        middle = np.asarray(item.read_slice(item.shape[0] // 2))
        measures = slice_physics(middle, item.modality)
        term = f"{reader.term(measures[None])[0]:+7.2f}" if reader else f"{'-':>7}"
        shift = f"{floor.term_of(measures):+7.2f}" if floor else f"{'-':>7}"
        print(f"{item.modality:<9}{term}{shift}  {item.paths[0]}")


if __name__ == "__main__":
    main()
