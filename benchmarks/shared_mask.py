"""IQMs plus whole-slice physics of one scan, CPU time, with the foreground mask shared and holes
filled by one labelling (now) against each computing its own mask and binary_fill_holes
(before), side by side in one process, and whether their outputs are equal.

Why: both steps run on the selected slices of every scan in the same worker, and for slices up
to 256 px both took the same mask of the same pixels (mediqa_cli.iqm._bright_foreground).

Per scan as the engine does it: physics on 8 slices, IQMs on 5 of them (engine.IQM_SLICES).
Scans: 8-slice slabs of the MNI T1 template as MR (197x233, the memo's case) and 512 px
photographs (fundus colour, radiograph grey: two grids, nothing shared, holes only).

Usage: python benchmarks/shared_mask.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive import _photos, source_volume  # noqa: E402


def scan_measures(slices: list[np.ndarray], modality: str) -> tuple[dict, list[np.ndarray]]:
    """The IQMs and physics of one scan, in the engine's order (IQMs first)."""
    from mediqa_cli import engine, iqm, physics

    picked = [slices[i] for i in engine._spread(list(range(len(slices))), engine.IQM_SLICES)]
    return (iqm.compute_iqms(picked, modality),
            [physics.slice_physics(s, modality) for s in slices])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternations (median)")
    args = parser.parse_args()
    from scipy import ndimage

    from mediqa_cli import iqm, physics

    volume, _ = source_volume()
    photos = _photos()
    scans = {
        "MR 8 x 197x233": ([(volume[i] * 4000).astype(np.int16).astype(np.float32)
                            for i in range(60, 140, 10)], "MR"),
        "fundus 8 x 512x512x3": ([np.roll(photos["fundus"][:512, :512], 7 * k, axis=1)
                                  .astype(np.float32) for k in range(8)], "FUNDUS"),
        "X-ray 8 x 512x512": ([np.roll(photos["xray"], 7 * k, axis=0).astype(np.float32)
                               for k in range(8)], "XR"),
    }
    now = (iqm._bright_foreground, iqm._fill_holes)
    before = (iqm._compute_bright_foreground, ndimage.binary_fill_holes)

    def use(way: tuple[Callable, Callable]) -> None:
        iqm._bright_foreground = physics._bright_foreground = way[0]
        iqm._fill_holes = way[1]
        iqm._MASK_MEMO.clear()

    print(f"{'scan':<22} {'before ms':>9} {'now ms':>7} {'saved':>6}  outputs equal")
    for name, (slices, modality) in scans.items():
        times: dict[str, list[float]] = {"before": [], "now": []}
        results = {}
        for _ in range(args.rounds):
            for label, way in (("before", before), ("now", now)):
                use(way)
                started = time.process_time()
                results[label] = scan_measures(slices, modality)
                times[label].append(time.process_time() - started)
        use(now)
        (iq0, ph0), (iq1, ph1) = results["before"], results["now"]
        equal = (all(np.array_equal(a, b, equal_nan=True) for a, b in zip(ph0, ph1))
                 and np.array_equal(list(iq0.values()), list(iq1.values()), equal_nan=True))
        t0, t1 = (statistics.median(times[k]) * 1000 for k in ("before", "now"))
        print(f"{name:<22} {t0:>9.1f} {t1:>7.1f} {1 - t1 / t0:>6.0%}  {equal}")


if __name__ == "__main__":
    main()
