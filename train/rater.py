"""A SIMULATED expert rater, to show that expert fine-tuning works when no real ratings exist.

No package ships medical images with human quality ratings (../shared/DATA.md), so this module
invents a rater - clearly SIMULATED, never to be reported as clinical evidence - whose taste
differs from the pre-training target on purpose, and measures whether `mediqa-train finetune`
learns that taste from 50, 100 and 200 of its labels.

The SIMULATED rater scores a degraded image from the per-family severities of the simulator
chain that made it (a MOS-like 1..5, higher is better):

    score = 1 + 4 * exp(-sum_f w[m, f] * max(0, s_f - t[m, f]) ** g[m, f]) + rater noise

- modality-dependent weights w: e.g. the MR rater is harsh on motion and ghosting and lenient on
  noise; the CT rater is harsh on streaks and tolerant of noise (it reads soft-tissue windows
  of low-dose scans every day); the photographic raters hate blur; the ultrasound rater ignores
  speckle, which is the image;
- per-family thresholds t (a mild artefact goes unnoticed) and exponents g (non-linear);
- Gaussian rater noise (sd 0.15 on the 1..5 scale) from a seeded generator.

The pre-training target, SSIM to the clean image (times a shading term when the recipe prices
smooth bias fields), weighs every pixel change alike (noise is
heavily penalised, a shift of contrast barely): a model that scores well on it need not rank
images the way this rater does, which is what makes the experiment informative.
`run_experiment` writes labelled image files and a labels.csv, fine-tunes through the same
`finetune` path users run, and reports SRCC on held-out TEST-split images before vs after.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mediqa_train.batches import BatchRecipe, CleanSlice, ExampleMaker

from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

SIMULATED_RATER_NAME = "SIMULATED rater v1 (not a human; see train/rater.py)"
RATER_NOISE_SD = 0.15

# (weight, threshold, exponent) per family; DEFAULT for families a modality does not list.
DEFAULT = (1.0, 0.15, 1.5)
PREFERENCES: dict[str, dict[str, tuple[float, float, float]]] = {
    "MR": {"motion": (5.0, 0.05, 1.0), "ghosting": (4.0, 0.05, 1.0), "noise": (0.4, 0.3, 2.0),
           "bias": (0.3, 0.3, 2.0), "undersampling": (2.5, 0.1, 1.2), "blur": (1.5, 0.1, 1.5)},
    "CT": {"streaks": (5.0, 0.05, 1.0), "noise": (0.5, 0.35, 2.0), "blur": (2.5, 0.1, 1.2),
           "undersampling": (3.0, 0.05, 1.0)},
    "XR": {"exposure": (3.5, 0.1, 1.0), "blur": (2.5, 0.1, 1.2), "noise": (0.6, 0.3, 2.0)},
    "US": {"noise": (0.2, 0.5, 2.0), "exposure": (3.0, 0.05, 1.0), "blur": (2.0, 0.1, 1.5)},
    "NM": {"noise": (1.0, 0.2, 1.5), "blur": (1.5, 0.1, 1.2)},
    "FUNDUS": {"blur": (4.0, 0.05, 1.0), "motion": (4.0, 0.05, 1.0), "exposure": (2.0, 0.1, 1.5),
               "bias": (0.5, 0.3, 2.0)},
    "HISTO": {"blur": (4.0, 0.05, 1.0), "exposure": (1.5, 0.2, 1.5),
              "compression": (2.5, 0.1, 1.0)},
}


def rater_score(severities: Sequence[float] | np.ndarray, modality: str,
                rng: np.random.Generator | None = None) -> float:
    """The SIMULATED rater's 1..5 score for one image from its per-family severities."""
    sev = np.asarray(severities, dtype=np.float64)
    if sev.shape != (len(PHYSICAL_FAMILIES),):
        raise ValueError(f"severities must be ({len(PHYSICAL_FAMILIES)},), got {sev.shape}")
    prefs = PREFERENCES.get(modality, {})
    burden = 0.0
    for family, s in zip(PHYSICAL_FAMILIES, sev):
        w, t, g = prefs.get(family, DEFAULT)
        burden += w * max(0.0, float(s) - t) ** g
    score = 1.0 + 4.0 * math.exp(-burden)
    if rng is not None:
        score += float(rng.normal(0.0, RATER_NOISE_SD))
    return float(score)


# --------------------------------------------------------------------------- labelled files

def write_image(image: torch.Tensor, spacing: tuple[float, float], path_stem: Path) -> Path:
    """Write a physical-unit slice so the product's readers open it as it was made.

    Grey: NIfTI float32 (H, W, 1) with the pixel spacing in the header (the reader shows NIfTI
    slices transposed, so the array is stored transposed). Colour: 8-bit RGB PNG.
    """
    if image.dim() == 3:
        from PIL import Image

        path = path_stem.with_suffix(".png")
        arr = image.permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
        Image.fromarray(np.ascontiguousarray(arr), mode="RGB").save(path)
        return path
    import nibabel as nib

    path = path_stem.with_suffix(".nii.gz")
    row_mm, col_mm = (float(s) if math.isfinite(s) else 1.0 for s in spacing)
    affine = np.diag([col_mm, row_mm, 1.0, 1.0])
    data = np.ascontiguousarray(image.numpy().astype(np.float32).T[:, :, None])
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def make_rated_set(pool: Sequence[CleanSlice], n: int, out_dir: str | os.PathLike[str],
                   config: Any, seed: int, clean_fraction: float = 0.1,
                   shading_weight: float = 0.0) -> list[dict[str, Any]]:
    """n degraded real crops rated by the SIMULATED rater, written under out_dir
    (`shading_weight`: that of the base weights' physics target, for the `physics` column).

    Each row: path (relative to out_dir), score (rater), physics (the pre-training target of the
    same image), modality, anatomy, source. Crops are drawn as in pre-training (random rescale,
    crop or whole slice), chains of 1-3 simulators at random severities.
    """
    from mediqa_train.quality import reference_quality, shading_of

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    recipe = BatchRecipe(clean_fraction=clean_fraction)
    maker = ExampleMaker(pool, config, recipe)
    rng = np.random.default_rng([seed, 11])
    gen = torch.Generator().manual_seed(seed + 11)
    rater_rng = np.random.default_rng([seed, 13])
    rows = []
    for i in range(n):
        while True:
            clean, spacing, src = maker.draw_clean(rng)
            if rng.random() < clean_fraction:
                image, sev = clean, np.zeros(len(PHYSICAL_FAMILIES))
                physics = 100.0
            else:
                image, sev, names = maker.degrade(clean, spacing, src.modality, gen)
                physics = (reference_quality(clean, image, src.modality,
                                             shading=shading_of(sev, names),
                                             shading_weight=shading_weight)
                           if names else 100.0)
            # A chain can saturate a crop to one value; the scorer refuses constant images (an
            # error row), so such an image could never be scored: draw another.
            if float(image.max() - image.min()) > 1e-6 * max(1.0, float(image.abs().max())):
                break
        path = write_image(image, spacing, out / "images" / f"img{i:04d}")
        rows.append({"path": str(path.relative_to(out)),
                     "score": round(rater_score(sev, src.modality, rater_rng), 4),
                     "physics": round(float(physics), 3), "modality": src.modality,
                     "anatomy": src.anatomy, "source": src.source})
    return rows


def write_labels(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str],
                 columns: Sequence[str] = ("path", "score", "modality", "anatomy")) -> Path:
    """labels.csv as `finetune` reads it (paths relative to the CSV's folder)."""
    p = Path(path)
    with open(p, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return p


# --------------------------------------------------------------------------- the experiment

def run_experiment(base: str | os.PathLike[str], corpus: str, out: str | os.PathLike[str],
                   sizes: Sequence[int] = (50, 100, 200), n_test: int = 200, folds: int = 0,
                   epochs: int = 10, seed: int = 0, n_boot: int = 1000,
                   echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune `base` on SIMULATED-rater labels of TRAIN/VAL-split images (nested sets of each
    size) and report SRCC against the rater on held-out TEST-split images, before vs after."""
    from mediqa_train.finetune import finetune, prepare_labelled, score_prepared
    from mediqa_train.pretrain import load_pool
    from mediqa_train.quality import trained_shading_weight

    from mediqa_cli.evaluation import evaluate, paired_difference
    from mediqa_cli.model.weights import load_weights

    started = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, card = load_weights(base)
    fit_pool = load_pool(corpus, "train") + load_pool(corpus, "val")
    test_pool = load_pool(corpus, "test")
    echo(f"SIMULATED rater experiment: {len(fit_pool)} train/val slices to label, "
         f"{len(test_pool)} test slices held out")
    shading = trained_shading_weight(card)
    fit_rows = make_rated_set(fit_pool, max(sizes), out_dir / "fit", model.config, seed,
                              shading_weight=shading)
    test_rows = make_rated_set(test_pool, n_test, out_dir / "test", model.config, seed + 1,
                               shading_weight=shading)
    test_csv = write_labels(test_rows, out_dir / "test" / "labels.csv",
                            ("path", "score", "physics", "modality", "anatomy", "source"))
    test_items = prepare_labelled(test_csv, model.config, echo=echo)
    rater = np.array([it.label for it in test_items])
    mods = [it.modality for it in test_items]
    by_path = {str((out_dir / "test" / r["path"]).resolve()): r["physics"] for r in test_rows}
    physics = np.array([by_path[it.path] for it in test_items])

    def report(pred: np.ndarray) -> dict[str, Any]:
        return evaluate(pred, rater, mods, n_boot=n_boot, seed=seed, metrics=("srcc", "plcc"))

    results: dict[str, Any] = {
        "rater": SIMULATED_RATER_NAME, "base": str(base), "base_sha256": card.get("sha256"),
        "n_test": len(test_items), "test_sources": sorted({r["source"] for r in test_rows}),
        "physics_target_vs_rater": report(physics),
        "before": report(before := score_prepared(model, test_items)),
        "after": {},
    }
    echo(f"before fine-tuning: SRCC {results['before']['all']['srcc']['value']:.3f}")
    for n in sizes:
        fit_csv = write_labels(fit_rows[:n], out_dir / "fit" / f"labels_{n}.csv")
        ft_dir = out_dir / f"finetuned_{n}"
        finetune(fit_csv, base, ft_dir, folds=folds, epochs=epochs, seed=seed, echo=echo)
        tuned, tuned_card = load_weights(ft_dir)
        after = score_prepared(tuned, test_items)
        # Same test images for both models: the paired interval of the gain is what says
        # whether fine-tuning helped (separate intervals count the test-set noise twice).
        gain = paired_difference(before, after, rater, "srcc", n_boot=n_boot, seed=seed)
        results["after"][str(n)] = {"test": report(after), "srcc_gain": gain.as_dict(),
                                    "cv": tuned_card.get("cross_validation")}
        echo(f"after fine-tuning on {n} labels: SRCC "
             f"{results['after'][str(n)]['test']['all']['srcc']['value']:.3f}")
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["protocol"] = {"sizes": list(sizes), "folds": folds, "epochs": epochs, "seed": seed,
                           "recipe": asdict(BatchRecipe(clean_fraction=0.1,
                                                        shading_weight=shading))}
    (out_dir / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


def results_table(results: dict[str, Any]) -> str:
    """Markdown table of a `run_experiment` result (SRCC with 95% bootstrap intervals)."""
    def cell(entry: dict[str, Any], metric: str = "srcc") -> str:
        m = entry[metric]
        return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"

    def gain(entry: dict[str, Any]) -> str:
        g = entry.get("srcc_gain")
        return "" if g is None else f"{g['value']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}]"

    shading = results.get("protocol", {}).get("recipe", {}).get("shading_weight", 0.0)
    priced = f", shading priced x{shading:g}" if shading else ""
    lines = ["| model (SIMULATED rater labels) | SRCC vs SIMULATED rater, held-out test | PLCC "
             "| SRCC gain over pre-trained (paired) |",
             "|---|---|---|---|",
             f"| physics target itself (SSIM to clean{priced}; an oracle, not a model) | "
             f"{cell(results['physics_target_vs_rater']['all'])} | "
             f"{cell(results['physics_target_vs_rater']['all'], 'plcc')} | |",
             f"| pre-trained, before fine-tuning | {cell(results['before']['all'])} | "
             f"{cell(results['before']['all'], 'plcc')} | |"]
    for n, entry in results["after"].items():
        lines.append(f"| fine-tuned on {n} labels | {cell(entry['test']['all'])} | "
                     f"{cell(entry['test']['all'], 'plcc')} | {gain(entry)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mediqa_train.rater`: run the SIMULATED-rater experiment, write its tables."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mediqa_train.rater",
                                 description="SIMULATED-rater fine-tuning experiment")
    ap.add_argument("--base", default="weights")
    ap.add_argument("--corpus", default="corpus")
    ap.add_argument("--out", default="runs/rater", help="labelled files and fine-tuned models")
    ap.add_argument("--metrics", default=None, help="also write simulated_rater.json/.md here")
    ap.add_argument("--sizes", default="50,100,200")
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--folds", type=int, default=0, help="k-fold CV inside each fine-tuning")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run_experiment(args.base, args.corpus, args.out,
                             sizes=[int(v) for v in args.sizes.split(",")], n_test=args.n_test,
                             folds=args.folds, epochs=args.epochs, seed=args.seed)
    results["command"] = "python -m mediqa_train.rater " + " ".join(
        argv if argv is not None else __import__("sys").argv[1:])
    table = results_table(results)
    print(table)
    if args.metrics:
        out = Path(args.metrics)
        out.mkdir(parents=True, exist_ok=True)
        (out / "simulated_rater.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "simulated_rater.md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "PREFERENCES",
    "SIMULATED_RATER_NAME",
    "make_rated_set",
    "rater_score",
    "results_table",
    "run_experiment",
    "write_image",
    "write_labels",
]
