"""Does the score of a real image change when its integer pixels are stored as floats?

Training sees resampled float slices; `mediqa score` reads integer PNG/DICOM pixels. A score that
moves when the same pixels are offset by 1e-3 (no longer integers, nothing else changed) has
learnt the storage type, not the image. A dither of +-1e-3 on top also breaks the ties that
clipping measures count (pixels exactly at the minimum or maximum), so its column says how much
of the score rests on exact ties. Prints, per modality, the mean and largest |score change| over
public images of manifest fold 0 (`--mirror`: the fetched repositories).

    python benchmarks/dtype_invariance.py --weights weights --mirror MIRRORS --groups 4
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path(".cache/manifest"))
    parser.add_argument("--groups", type=int, default=4, help="images per modality")
    args = parser.parse_args()

    from mediqa_train.evaluate import WeightSet, _score_of, load_image, pick_images
    from mediqa_train.manifest import read_manifest

    weights = WeightSet("model", args.weights)
    entries = [e for e in read_manifest() if e.fold == 0]
    rng = np.random.default_rng(0)
    print(f"{weights.version}: |score(integer) - score(float)| on fold-0 images")
    print("modality  images  offset mean  offset max  dither mean  dither max")
    for modality in ("CT", "FUNDUS", "HISTO", "MR", "NM", "US", "XR"):
        changes = []
        for entry in pick_images(entries, args.groups, [modality]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = load_image(entry, args.cache, args.mirror)
            if not np.all(image.pixels == np.round(image.pixels)):
                continue  # already float: nothing to compare
            dither = rng.uniform(-1e-3, 1e-3, image.pixels.shape).astype(np.float32)
            a, b, c = (_score_of(r) for r in weights.score(
                [image.pixels, image.pixels + 1e-3, image.pixels + 1e-3 + dither], image, "dtype"))
            changes.append((abs(a - b), abs(a - c)))
        if changes:
            d = np.asarray(changes)
            print(f"{modality:8s}  {len(d):6d}  {d[:, 0].mean():11.2f}  {d[:, 0].max():10.2f}  "
                  f"{d[:, 1].mean():11.2f}  {d[:, 1].max():10.2f}")


if __name__ == "__main__":
    main()
