"""Which measure of a smooth MR field rises along the stick's bias ladders; does pricing it help?

On the middle slices of the MR patients of the given folds (never fold 0 when choosing), the
stick's ladders (`mediqa_train.eval_ladders`, TorchIO's `RandomBiasField`; the same draws as
`mediqa-train evaluate`), print for four measures of the object's smooth intensity field

- `token`: the `bias` physics token (log10 CV of the field smoothed over 1/8 of the slice);
- `entropy`: the entropy of the object's log-intensity histogram (bins of 0.02): a
  multiplicative field spreads every tissue's peak, the criterion N3 sharpens;
- `logpoly3`: the spread of a cubic polynomial fitted to log intensity over the eroded object;
- `modefield`: the same, fitted only to the pixels of the dominant tissue (within 0.15 of the
  log-intensity mode), alternating with the correction it implies, as N3 and FAST do;
- `n4field`: the SD over the object of the log field SimpleITK's N4 estimates (Tustison et
  al., IEEE TMI 29(6), 2010; two fitting levels of 30 and 20 iterations, its other defaults);

their mean within-ladder SRCC with the rung (+1: rises step by step), their median and spread
over the clean slices and their median rise at steps 3 and 5. A measure helps only if what a
field adds is large against how much clean slices differ.

With --journal (the `.jsonl` that `mediqa-train evaluate --fold K --modality MR --out F.json`
writes beside F.json, one per fold; the ladder keys match them up), also every clean slice's
logit, the cross-image AUC by family, and with --hinge BOUND PRICE the MR families' SRCC and
the cross-image AUC of the network's logits as they are and with `-PRICE * max(0, token -
BOUND)` added (candidate BC in `benchmarks/results/preregistered_candidates_session30.md`); with
--linear P... the same for `-P * (measure - median) / SD` of every measure, median and SD over
the scored clean slices (the development scan of candidate TP, session 31).

Usage:
    python benchmarks/mr_bias_measures.py --fold 1 --fold 3 --mirror MIRRORS \\
        --journal mr_f1.jsonl --journal mr_f3.jsonl --hinge -1.145 3.80
    python benchmarks/mr_bias_measures.py --fold 1 --fold 2 --fold 3 --fold 4 --mirror MIRRORS \\
        --journal mr_f1.jsonl ... --journal mr_f4.jsonl --linear 0.25 0.5 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
from mediqa_train import evaluate as ev
from mediqa_train.eval_ladders import FAMILIES
from mediqa_train.ladders import ladder_srcc
from mediqa_train.manifest import read_manifest
from scipy import ndimage

from mediqa_cli import physics
from mediqa_cli.calibration import raw_logit
from mediqa_cli.iqm import _bright_foreground

MEASURES = ("token", "entropy", "logpoly3", "modefield", "n4field")
TOKEN = physics.PHYSICS_FEATURES.index("bias")
AS_SHIPPED = "network + readers"  # the journal's logits, no term added


def _object(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The block-averaged slice and its bright-object mask, as `slice_physics` makes them
    (without its fallback to the whole slice when no object is found: the measures read NaN)."""
    full = np.maximum(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0.0)
    factor = max(1, math.ceil(max(full.shape) / physics.GLOBAL_SIDE))
    small = physics._block_average(full, factor)
    return small, _bright_foreground(small)


def log_entropy(small: np.ndarray, mask: np.ndarray, width: float = 0.02) -> float:
    values = np.log(np.maximum(small[mask], 1e-6 * small.max() + 1e-12))
    if values.size < 64:
        return math.nan
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi - lo < width:
        return math.nan
    counts, _ = np.histogram(np.clip(values, lo, hi), np.arange(lo, hi + width, width))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _log_design(mask: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(pixels of the eroded object, cubic-or-other polynomial design over them), or None."""
    inner = ndimage.binary_erosion(mask, iterations=max(1, min(mask.shape) // 32))
    if inner.sum() < 64:
        return None
    rows, cols = np.nonzero(inner)
    y = 2.0 * rows / max(mask.shape[0] - 1, 1) - 1.0
    x = 2.0 * cols / max(mask.shape[1] - 1, 1) - 1.0
    return inner, np.stack([x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)], 1)


def log_poly_spread(small: np.ndarray, mask: np.ndarray, order: int = 3) -> float:
    found = _log_design(mask, order)
    if found is None:
        return math.nan
    inner, design = found
    values = np.log(np.maximum(small[inner], 1e-6 * small.max() + 1e-12))
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return float((design @ coef).std())


def mode_field(small: np.ndarray, mask: np.ndarray, order: int = 3, rounds: int = 8,
               half_width: float = 0.15) -> float:
    """Spread of a polynomial log-field fitted to the dominant tissue's pixels only: those
    within `half_width` of the mode of the corrected log intensity, re-chosen each round."""
    found = _log_design(mask, order)
    if found is None:
        return math.nan
    inner, design = found
    values = np.log(np.maximum(small[inner], 1e-6 * small.max() + 1e-12))
    field = np.zeros_like(values)
    for fitted in range(rounds):
        corrected = values - field
        counts, edges = np.histogram(corrected, bins=100)
        k = int(np.argmax(ndimage.uniform_filter1d(counts.astype(np.float64), 5)))
        near = np.abs(corrected - 0.5 * (edges[k] + edges[k + 1])) < half_width
        if near.sum() < 64:
            if fitted == 0:
                return math.nan  # no dominant tissue to fit: unknown, not "no field"
            break
        coef, *_ = np.linalg.lstsq(design[near], values[near], rcond=None)
        field = design @ coef
        field -= field.mean()
    return float(field.std())


def n4_field(small: np.ndarray, mask: np.ndarray) -> float:
    """SD over the object of the log bias field N4 fits to the block-averaged slice."""
    import SimpleITK as sitk  # noqa: N813 (the library's own name); with TorchIO, for the stick

    if mask.sum() < 64:
        return math.nan
    image = sitk.GetImageFromArray(small.astype(np.float32) + 1e-3)
    fitter = sitk.N4BiasFieldCorrectionImageFilter()
    fitter.SetMaximumNumberOfIterations([30, 20])
    fitter.Execute(image, sitk.GetImageFromArray(mask.astype(np.uint8)))
    log_field = sitk.GetArrayFromImage(fitter.GetLogBiasFieldAsImage(image))
    return float(log_field[mask].std())


def measures(image: np.ndarray) -> list[float]:
    small, mask = _object(image)
    token = float(physics.slice_physics(image, "MR")[TOKEN])
    return [token, log_entropy(small, mask), log_poly_spread(small, mask),
            mode_field(small, mask), n4_field(small, mask)]


def true_field_sd(step: np.ndarray, clean: np.ndarray) -> float:
    """SD of log(step / clean) over the clean object's brighter pixels: the field applied."""
    s, _ = _object(step)
    c, mask = _object(clean)
    keep = mask & (c > 0.05 * c.max()) & (s > 0)
    return float(np.log(s[keep] / c[keep]).std()) if keep.sum() > 16 else math.nan


def rise(values: np.ndarray) -> float:
    """SRCC of a measure with the rung: +1 when it rises step by step as the fault grows."""
    return -ladder_srcc(values)


def stick_table(scored: list[tuple[str, str, np.ndarray]]) -> ev.Table:
    """`mediqa-train evaluate`'s statistics over MR ladders (family, group, {method: values}):
    its within-ladder SRCCs and its cross-image AUC, not a second implementation of them."""
    results = [ev.LadderResult("MR", family, group, {m: list(v) for m, v in values.items()})
               for family, group, values in scored]
    return ev.Table(results, list(scored[0][2]) if scored else [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold", type=int, action="append", required=True)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="the ladder draws' seed (evaluate's)")
    parser.add_argument("--journal", type=Path, action="append", default=[])
    parser.add_argument("--hinge", type=float, nargs=2, metavar=("BOUND", "PRICE"))
    parser.add_argument("--linear", type=float, nargs="+", default=[], metavar="P")
    parser.add_argument("--manifest", type=Path, default=Path("train/manifest.csv"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/manifest"))
    parser.add_argument("--mirror", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.journal and len(args.journal) != len(args.fold):
        parser.error("one --journal per --fold")

    scores: dict[str, list[float]] = {}
    for journal in args.journal:
        for line in journal.read_text().splitlines():
            row = json.loads(line)
            if row["modality"] == "MR":
                scores[row["key"]] = row["values"]["model"]
    families = FAMILIES["MR"] if scores else [f for f in FAMILIES["MR"] if f.name == "bias"]
    bias_rows: list[np.ndarray] = []
    applied: list[float] = []  # the true log-field SD at the strongest step
    scored: list[tuple[str, str, np.ndarray, np.ndarray]] = []  # family, group, logits, measures
    files: dict[str, str] = {}  # group -> the file its slice came from
    manifest = read_manifest(args.manifest)
    for fold in args.fold:
        entries = [e for e in manifest if e.fold == fold]
        for entry in ev.pick_images(entries, args.groups, ["MR"]):
            try:
                image = ev.load_image(entry, args.cache, args.mirror)
            except ValueError:  # evaluate skips these too
                continue
            files[image.group] = entry.path
            for family in families:
                key = ev.ladder_key(args.seed, image, family)
                steps = ev.ladder_steps(image, family, key)
                values = np.array([measures(s) for s in steps])
                if family.name == "bias":
                    bias_rows.append(values)
                    applied.append(true_field_sd(steps[-1], steps[0]))
                if key in scores:
                    scored.append((family.name, image.group,
                                   raw_logit(np.asarray(scores[key])), values))

    if not bias_rows:
        raise SystemExit(f"no MR image of folds {args.fold} could be read")
    stack = np.stack(bias_rows)  # (ladders, steps, measures)
    print(f"MR bias ladders of folds {args.fold}: {len(stack)}; the field applied at the "
          f"strongest step, SD of log(step / clean): median {np.nanmedian(applied):.2f}, "
          f"{np.nanmin(applied):.2f}-{np.nanmax(applied):.2f}")
    print(f"{'measure':10s} {'SRCC':>6s} {'clean median':>13s} {'clean SD':>9s} {'rise@3':>7s} "
          f"{'rise@5':>7s}")
    for k, name in enumerate(MEASURES):
        srcc = np.nanmean([rise(v[:, k]) for v in stack])
        clean = stack[:, 0, k]
        print(f"{name:10s} {srcc:+6.2f} {np.nanmedian(clean):13.3f} {np.nanstd(clean):9.3f} "
              f"{np.nanmedian(stack[:, 3, k] - clean):+7.3f} "
              f"{np.nanmedian(stack[:, 5, k] - clean):+7.3f}")
    if not scored:
        return
    clean_logits = sorted({(g, float(logit[0])) for _, g, logit, _ in scored},
                          key=lambda x: x[1])
    print("clean slices by the score's logit, lowest first:")
    for group, value in clean_logits:
        print(f"  {value:5.1f}  {group:24s} {files[group]}")
    terms = {AS_SHIPPED: lambda t: np.zeros_like(t)}
    if args.hinge:
        bound, price = args.hinge
        terms[f"+ hinge {bound:g}, {price:g}"] = (
            lambda t: -price * np.nan_to_num(np.maximum(t - bound, 0.0)))
    table = stick_table([(fam, g, {label: logit + term(v[:, 0]) for label, term in terms.items()})
                         for fam, g, logit, v in scored])
    by_method = table.srcc("MR")
    for label in terms:
        cells = ", ".join(f"{k} {v:.3f}" for k, v in by_method[label].items() if k != "mean")
        print(f"{label}: MR {by_method[label]['mean']:.3f} ({cells}); "
              f"AUC {table.auc('MR', label):.3f}")
    # Which family's degraded steps the cross-image AUC loses on: each clean slice against the
    # other groups' steps 3-5 of one family, and of every family but bias.
    subsets = {f.name: {f.name} for f in families} | {"all but bias": {
        f.name for f in families if f.name != "bias"}}
    cells = []
    for name, kept in subsets.items():
        part = [(fam, g, {AS_SHIPPED: logit}) for fam, g, logit, _ in scored if fam in kept]
        cells.append(f"{name} {stick_table(part).auc('MR', AS_SHIPPED):.3f}")
    print(f"cross-image AUC by family ({AS_SHIPPED}): {', '.join(cells)}")

    if not args.linear:
        return
    clean = np.stack([v[0] for _, _, _, v in scored])  # (ladders, measures)
    centre, spread = np.nanmedian(clean, axis=0), np.nanstd(clean, axis=0)
    print("linear prices, -P * (measure - median) / SD: MR mean / bias / cross-image AUC")
    for k, name in enumerate(MEASURES):
        def priced(p: float, v: np.ndarray, k: int = k) -> np.ndarray:
            return -p * np.nan_to_num((v[:, k] - centre[k]) / spread[k])

        table = stick_table([(fam, g, {f"{p:g}": logit + priced(p, v) for p in args.linear})
                             for fam, g, logit, v in scored])
        srcc = table.srcc("MR")
        cells = [f"P {p:g}: {srcc[f'{p:g}']['mean']:.3f} / {srcc[f'{p:g}']['bias']:.2f} / "
                 f"{table.auc('MR', f'{p:g}'):.3f}" for p in args.linear]
        print(f"  {name:10s} " + "; ".join(cells))


if __name__ == "__main__":
    main()
