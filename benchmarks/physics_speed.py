"""CPU cost of the whole-slice physics measures (`slice_physics`), this tree beside another,
and whether both give the same bits.

Why: the measures are a third of what `mediqa score` spends on CPU (`end_to_end.py`, stage
"physics"), and they feed trained weights, so a faster version must return the same values to
the bit. An end-to-end run on a shared two-core machine is too noisy to show a 10 % change in one
stage; this times the function alone on real packaged images, the two trees alternating round
by round in their own child processes (CPU time, one thread), and compares the token bytes.

Usage: python benchmarks/physics_speed.py --baseline SRC [--rounds 9]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import json, sys, time
import numpy as np
import pydicom
import skimage.data
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from mediqa_cli.physics import slice_physics

def dicom(name):
    ds = pydicom.dcmread(get_testdata_file(name))
    a = ds.pixel_array
    if a.ndim == 3 and a.shape[-1] != 3:
        a = a[a.shape[0] // 2]
    if ds.get("PhotometricInterpretation", "").startswith("MONO"):
        a = apply_modality_lut(a, ds)
    return np.ascontiguousarray(a, dtype=np.float32)

rng = np.random.default_rng(0)
holes = rng.normal(100, 20, (256, 256)).astype(np.float32)
holes[:40, :30] = np.nan
inputs = [("CT 128 (CT_small)", dicom("CT_small.dcm"), "CT"),
          ("MR 1024 (MR2_UNCR)", dicom("MR2_UNCR.dcm"), "MR"),
          ("CR 1955x1841 (RG1_UNCR)", dicom("RG1_UNCR.dcm"), "CR"),
          ("US 480x640 colour (US1_UNCR)", dicom("US1_UNCR.dcm"), "US"),
          ("fundus 1411 colour uint8 (retina)", skimage.data.retina(), "FUNDUS"),
          ("X-ray 512 uint8 (camera)", skimage.data.camera(), "XR"),
          ("H&E 512 colour (immunohistochemistry)", skimage.data.immunohistochemistry(), "HISTO"),
          ("MR 256 with NaN", holes, "MR")]
out = {}
for name, image, modality in inputs:
    slice_physics(image, modality)  # warm caches and imports
    started = time.process_time()
    values = slice_physics(image, modality)
    out[name] = [time.process_time() - started, values.tobytes().hex()]
json.dump(out, sys.stdout)
'''


def run_tree(source: str) -> dict[str, list]:
    """One round in a child process importing `source`'s mediqa_cli (from a neutral folder, so
    `python -c`'s working directory does not shadow PYTHONPATH)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, (source, os.environ.get("PYTHONPATH")))))
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD], env=env, check=True,
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="source tree to compare with")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    trees = {"this": str(Path(__file__).resolve().parents[1]), "baseline": args.baseline}
    times: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
    digests: dict[str, dict[str, set[str]]] = {t: {} for t in trees}
    for round_ in range(args.rounds):
        order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
        for tree in order:
            for name, (seconds, hexed) in run_tree(trees[tree]).items():
                times[tree].setdefault(name, []).append(seconds)
                digest = hashlib.sha256(hexed.encode()).hexdigest()
                digests[tree].setdefault(name, set()).add(digest)
    print(f"slice_physics CPU ms, median of {args.rounds} rounds (trees alternating)")
    print(f"{'input':40s} {'baseline':>9s} {'this':>9s} {'this/base':>9s}  same bits")
    totals = {t: 0.0 for t in trees}
    for name in times["this"]:
        base, this = (1e3 * statistics.median(times[t][name]) for t in ("baseline", "this"))
        totals["baseline"] += base
        totals["this"] += this
        same = digests["this"][name] == digests["baseline"][name]
        print(f"{name:40s} {base:9.2f} {this:9.2f} {this / base:9.2f}  {'yes' if same else 'NO'}")
    print(f"{'sum of medians':40s} {totals['baseline']:9.2f} {totals['this']:9.2f} "
          f"{totals['this'] / totals['baseline']:9.2f}")


if __name__ == "__main__":
    main()
