"""How much of the SIMULATED rater's taste do the pre-trained outputs carry? (CPU, ~35 s)

The rater experiment (`python -m mediqa_train.rater`) fine-tunes prompts and heads and finds no
reliable gain. This script asks where the limit is. On the same rated sets (train/val-split
images to fit, test-split images to score, the experiment's seeds) it compares, by SRCC against
the rater on the test images:

- the physics target itself (SSIM to clean, shading priced if the weights' recipe priced it;
  an oracle no model has at run time);
- the pre-trained score;
- read-outs fitted on the fit set over the pre-trained outputs, with no network change: the
  non-negative family mixture `finetune` starts from, and a ridge regression per modality on
  the nine severities plus the score (what a per-modality expert head could reach);
- `finetune`'s own model (prompts, queries and heads), scored on the test images and on the
  labels it was trained on (does it even fit them?).

If the per-modality read-out is near chance for a modality, the pre-trained features do not
carry that rater's taste there, whatever the fine-tuning loop does.

Usage:
    python benchmarks/rater_features.py --weights weights --corpus corpus --n 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from mediqa_train.finetune import (
    fit_mixture,
    member_states,
    prepare_labelled,
    scan_severities,
    score_prepared,
    tune_members,
)
from mediqa_train.pretrain import load_pool
from mediqa_train.quality import trained_shading_weight
from mediqa_train.rater import make_rated_set, write_labels

from mediqa_cli.evaluation import srcc
from mediqa_cli.model.weights import load_weights


def ridge_per_modality(features_fit: np.ndarray, y_fit: np.ndarray, mods_fit: np.ndarray,
                       features: np.ndarray, mods: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """Predictions from one ridge regression (with intercept) per modality."""
    out = np.zeros(len(features))
    for m in np.unique(mods):
        a = np.c_[features_fit[mods_fit == m], np.ones((mods_fit == m).sum())]
        coef = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y_fit[mods_fit == m])
        out[mods == m] = np.c_[features[mods == m], np.ones((mods == m).sum())] @ coef
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--corpus", default="corpus")
    ap.add_argument("--out", default="runs/rater_features", help="rated image files")
    ap.add_argument("--n", type=int, default=200, help="rated images per set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, card = load_weights(args.weights)
    cpu = torch.device("cpu")
    sets = {}
    for name, split, seed in (("fit", ("train", "val"), args.seed),
                              ("test", ("test",), args.seed + 1)):
        pool = [s for sp in split for s in load_pool(args.corpus, sp)]
        folder = Path(args.out) / name
        rows = make_rated_set(pool, args.n, folder, model.config, seed,
                              shading_weight=trained_shading_weight(card))
        csv = write_labels(rows, folder / "labels.csv",
                           ("path", "score", "physics", "modality", "anatomy", "source"))
        items = prepare_labelled(csv, model.config)
        physics = {str((folder / r["path"]).resolve()): r["physics"] for r in rows}
        sets[name] = {
            "items": items, "y": np.array([it.label for it in items]),
            "mods": np.array([it.modality for it in items]),
            "physics": np.array([physics[it.path] for it in items]),
            "score": score_prepared(model, items), "sev": scan_severities(model.eval(), items, cpu)}
    fit, test = sets["fit"], sets["test"]
    y01 = (fit["y"] - fit["y"].min()) / np.ptp(fit["y"])
    mix = fit_mixture(fit["sev"], y01).numpy()
    feats = {k: np.c_[s["sev"], s["score"] / 100.0] for k, s in sets.items()}
    ridge = ridge_per_modality(feats["fit"], fit["y"], fit["mods"], feats["test"], test["mods"])
    tuned = tune_members(member_states(model), model.config, fit["items"], y01, seed=args.seed)
    tuned_test = score_prepared(tuned, test["items"])
    tuned_fit = score_prepared(tuned, fit["items"])
    columns = {
        "physics target (oracle)": test["physics"],
        "pre-trained score": test["score"],
        "NNLS family mixture (fit set)": -(test["sev"] @ mix),
        "ridge per modality on severities + score (fit set)": ridge,
        "finetune (prompts, queries, heads)": tuned_test,
    }
    mods = sorted(set(test["mods"]))
    print(f"| SRCC vs SIMULATED rater, {len(test['y'])} test images | all | "
          + " | ".join(f"{m} ({(test['mods'] == m).sum()})" for m in mods) + " |")
    print("|---|---|" + "---|" * len(mods))
    for name, pred in columns.items():
        cells = [srcc(pred[test["mods"] == m], test["y"][test["mods"] == m]) for m in mods]
        print(f"| {name} | {srcc(pred, test['y']):.3f} | "
              + " | ".join(f"{c:.3f}" for c in cells) + " |")
    print(f"\nfinetune on its own {len(fit['y'])} training labels: SRCC "
          f"{srcc(tuned_fit, fit['y']):.3f} (how well it fits what it was trained on)")
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
