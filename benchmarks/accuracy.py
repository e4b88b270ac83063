"""Does the score mean something? Accuracy of shipped weights on held-out TEST-split sources only.

Everything here is drawn from the corpus's test split (sources never seen in pre-training;
`--split val` below is the one exception):

1. Severity ladders: for each test image and each degradation family its modality has, the clean
   image plus the same simulated artefact at severities 0.2, 0.4, 0.6, 0.8, 1.0 (one seed per
   ladder, so only the strength changes). Within-ladder SRCC between the score and the severity
   rank (ideal: 1.0), averaged per modality and per family. The same ladders are scored by every
   classical IQM of `mediqa_cli.iqm` (sign flipped where lower is better) side by side, and by
   the model's own severity output for the ladder's family (the report's `phys_<family>`
   column, sign flipped): a family the quality target barely moves (SSIM hardly sees a smooth
   bias field) can still be ranked by its severity head.
2. Overall agreement with the physics-derived target (SSIM to the clean image, times the shading
   term when the weights' recipe priced smooth bias fields; 0..100) on random
   simulator chains at random severities, as in pre-training: SRCC/PLCC (+ KRCC, RMSE) with
   bootstrap intervals, per modality.
3. The context head with metadata removed: modality and anatomy accuracy.
4. Clean test images, whole slices as `mediqa score` sees them: score per modality.
5. A proxy for unseen degradations: ladders of simulators applied to modalities they were never
   trained on (`UNSEEN`: photographic motion blur and defocus on radiological images, MR k-space
   ghosting elsewhere), so the artefact's family is known to the model but this look of it is
   not. The real held-out-family experiment is `benchmarks/held_out_family.py`.

Every ladder is also scored by the same network untrained ("random init": random features often
move monotonically with an artefact, so this is the chance level to beat) and by any weights
given with `--compare NAME=WEIGHTS`; each of those also gets a "NAME + model (mean)" column: the
mean of the two networks' scores, what an ensemble of the two independently trained runs would
rank (one run's per-family cells swing by more than a recipe change moves them).

`--split val` runs the same measurements on the val sources instead: for choosing between
candidate weights (with `benchmarks/compare_ladders.py` on the val ladders) without looking at the
test split, whose numbers are then reported once for the candidate chosen.

Images reach the model through the inference path (normalise, patchify, patch selection, pack).
Usage:
    python benchmarks/accuracy.py --weights weights --corpus corpus --out weights/metrics
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mediqa_train.batches import BatchRecipe, Example, ExampleMaker, to_reader_layout
from mediqa_train.ladders import (
    Ladder,
    build_ladders,
    evaluation_recipe,
    example_of,
    ladder_srcc,
)
from mediqa_train.pretrain import load_pool, predict
from mediqa_train.quality import reference_quality, shading_of

from mediqa_cli.evaluation import evaluate
from mediqa_cli.iqm import compute_iqms
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.weights import load_weights
from mediqa_cli.views import VIEW_COUNTS, flip_views

# Classical IQMs that measure quality, and whether higher is better (mediqa_cli/iqm.py).
IQM_DIRECTION = {"iqm_snr": True, "iqm_cnr": True, "iqm_efc": False, "iqm_fber": True,
                 "iqm_sharpness": True, "iqm_noise_sigma": False}


def iqm_values(image: torch.Tensor, modality: str) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = compute_iqms([to_reader_layout(image)], modality)
    return {k: (v if IQM_DIRECTION[k] else -v) for k, v in values.items() if k in IQM_DIRECTION}


def view_examples(images: Sequence[torch.Tensor], spacings: Sequence[tuple[float, float]],
                  modalities: Sequence[str], anatomies: Sequence[str], config: Any,
                  recipe: BatchRecipe, known: bool = True, views: int = 1
                  ) -> list[list[Example]]:
    """The images as `mediqa score --views` feeds them: one example list per mirror view
    (`mediqa_cli.views`), tokenised once and shared by every network scored on them."""
    mirrored = [flip_views(im, views, axes=(-2, -1)) for im in images]
    return [[example_of(m[v], sp, mod, ana, config, recipe, known)
             for m, sp, mod, ana in zip(mirrored, spacings, modalities, anatomies, strict=True)]
            for v in range(views)]


def predict_averaged(model: MedIQANet, view_sets: Sequence[Sequence[Example]]
                     ) -> dict[str, np.ndarray]:
    """Quality, severities and context logits averaged over the view sets; ids from the mean
    logits."""
    preds = [predict(model, examples, torch.device("cpu")) for examples in view_sets]
    keys = ("quality", "severities", "modality_logits", "anatomy_logits")
    out = {k: np.mean([p[k] for p in preds], axis=0) for k in keys}
    out["modality"] = out["modality_logits"].argmax(1)
    out["anatomy"] = out["anatomy_logits"].argmax(1)
    return out


def ladder_view_examples(lad: Ladder, config: Any, recipe: BatchRecipe, views: int = 1
                         ) -> list[list[Example]]:
    """A ladder's images as `view_examples` (metadata known)."""
    n = len(lad.images)
    return view_examples(lad.images, [lad.spacing] * n, [lad.modality] * n, [lad.anatomy] * n,
                         config, recipe, views=views)


def ladders(model: MedIQANet, pool: Sequence[Any], per_modality: int, seed: int,
            recipe: BatchRecipe, unseen: bool = False,
            others: dict[str, MedIQANet] | None = None, views: int = 1) -> list[dict[str, Any]]:
    """Score severity ladders by the model, the `others` (name -> network: the same network
    untrained, a model trained without one family) and the classical IQMs (see module
    docstring); `unseen`: use the `UNSEEN` simulators on modalities they were not trained for;
    `views`: networks' outputs averaged over that many mirror views."""
    rows = []
    for lad in build_ladders(pool, model.config, recipe, per_modality, seed, unseen):
        view_sets = ladder_view_examples(lad, model.config, recipe, views)
        pred = predict_averaged(model, view_sets)
        scores = pred["quality"]
        family_severity = pred["severities"][:, model.config.families.index(lad.family)]
        other_scores = {name: [round(float(v), 3)
                               for v in predict_averaged(net, view_sets)["quality"]]
                        for name, net in (others or {}).items()}
        iqms = [iqm_values(im, lad.modality) for im in lad.images]
        clean = lad.images[0]
        rows.append({
            "modality": lad.modality, "family": lad.family, "simulator": lad.simulator,
            "source": lad.source, "shape": list(clean.shape[-2:]),
            "scores": [round(float(v), 3) for v in scores],
            "family_head": [round(-float(v), 4) for v in family_severity],
            "physics": [100.0] + [
                round(reference_quality(clean, im, lad.modality, shading=shading,
                                        shading_weight=recipe.shading_weight), 3)
                for im, shading in zip(lad.images[1:], lad.shading[1:], strict=True)],
            "iqms": {k: [d[k] for d in iqms] for k in IQM_DIRECTION},
            "others": other_scores,
        })
    return rows


def add_mean_scores(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """Add to each row's `others` the mean of the model's scores and each named network's."""
    for row in rows:
        for name in names:
            mean = (np.asarray(row["scores"]) + np.asarray(row["others"][name])) / 2.0
            row["others"][f"{name} + model (mean)"] = [round(float(v), 3) for v in mean]


def summarise_ladders(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean within-ladder SRCC per modality and per (modality, family), model and each IQM."""
    others = sorted({name for r in rows for name in r.get("others", {})})
    methods = ["model", "family_head", "physics"] + list(IQM_DIRECTION) + others

    def per(row: dict[str, Any], method: str) -> float:
        if method == "model":
            values = row["scores"]
        elif method == "family_head":
            if "family_head" not in row:  # rows written before the column existed
                return math.nan
            values = row["family_head"]
        elif method == "physics":
            values = row["physics"]
        elif method in IQM_DIRECTION:
            values = row["iqms"][method]
        else:
            values = row["others"][method]
        return ladder_srcc(values)

    table: dict[str, Any] = {"by_modality": {}, "by_family": {}, "n_ladders": len(rows)}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["modality"], "*")].append(r)
        groups[(r["modality"], r["family"])].append(r)
        groups[("*", r["family"])].append(r)
        groups[("*", "*")].append(r)
    for (mod, fam), members in sorted(groups.items()):
        entry = {"n": len(members)}
        for m in methods:
            vals = np.array([per(r, m) for r in members])
            ok = vals[np.isfinite(vals)]
            entry[m] = float(ok.mean()) if ok.size else math.nan
            entry[f"{m}_n_valid"] = int(ok.size)
        if fam == "*":
            table["by_modality"][mod] = entry
        else:
            table["by_family"][f"{mod}/{fam}"] = entry
    return table


def random_chains(model: MedIQANet, pool: Sequence[Any], n: int, seed: int,
                  recipe: BatchRecipe, n_boot: int = 1000, views: int = 1) -> dict[str, Any]:
    """Random simulator chains on the pool's images: score vs physics target, and context accuracy
    with metadata removed (the same images); `views`: outputs averaged over mirror views."""
    cfg = model.config
    images, spacings, targets, mods, anats = chain_images(pool, cfg, recipe, n, seed)
    p_known = predict_averaged(model, view_examples(images, spacings, mods, anats, cfg,
                                                    recipe, True, views))
    p_unknown = predict_averaged(model, view_examples(images, spacings, mods, anats, cfg,
                                                      recipe, False, views))
    target = np.array(targets)
    true_mod = np.array([cfg.modalities.index(m) for m in mods])
    true_ana = np.array([cfg.anatomies.index(a) for a in anats])
    context: dict[str, Any] = {}
    for name in ["all", *sorted(set(mods))]:
        keep = np.ones(len(mods), bool) if name == "all" else np.array(mods) == name
        guessed = p_unknown["modality"][keep]
        wrong = Counter(cfg.modalities[int(i)] for i in guessed[guessed != true_mod[keep]])
        context[name] = {
            "n": int(keep.sum()),
            "modality_acc": float((guessed == true_mod[keep]).mean()),
            "anatomy_acc": float((p_unknown["anatomy"][keep] == true_ana[keep]).mean()),
            "modality_mistaken_for": dict(wrong.most_common()),
        }
    return {
        "metadata_known": evaluate(p_known["quality"], target, mods, n_boot=n_boot, seed=seed),
        "metadata_removed": evaluate(p_unknown["quality"], target, mods, n_boot=n_boot,
                                     seed=seed, metrics=("srcc", "plcc")),
        "context_head_metadata_removed": context,
    }


def chain_images(pool: Sequence[Any], config: Any, recipe: BatchRecipe, n: int, seed: int
                 ) -> tuple[list[torch.Tensor], list[tuple[float, float]], list[float],
                            list[str], list[str]]:
    """(images, spacings, physics targets, modalities, anatomies) of `n` random crops, a
    `recipe.clean_fraction` of them clean and the rest through a random simulator chain."""
    maker = ExampleMaker(pool, config, recipe)
    rng = np.random.default_rng([seed, 31])
    gen = torch.Generator().manual_seed(seed + 31)
    images, spacings, targets, mods, anats = [], [], [], [], []
    for _ in range(n):
        clean, spacing, src = maker.draw_clean(rng)
        if rng.random() < recipe.clean_fraction:
            image, q = clean, 100.0
        else:
            image, sev, names = maker.degrade(clean, spacing, src.modality, gen)
            q = (reference_quality(clean, image, src.modality, shading=shading_of(sev, names),
                                   shading_weight=recipe.shading_weight)
                 if names else 100.0)
        images.append(image)
        spacings.append(spacing)
        targets.append(q)
        mods.append(src.modality)
        anats.append(src.anatomy)
    return images, spacings, targets, mods, anats


def clean_scores(model: MedIQANet, pool: Sequence[Any], recipe: BatchRecipe) -> dict[str, Any]:
    """Scores of every clean slice of the pool, whole, per modality."""
    by_mod: dict[str, list[Example]] = defaultdict(list)
    for item in pool:
        by_mod[item.modality].append(example_of(item.image, item.spacing, item.modality,
                                                item.anatomy, model.config, recipe))
    out = {}
    for mod, examples in sorted(by_mod.items()):
        q = predict(model, examples, torch.device("cpu"))["quality"]
        out[mod] = {"n": len(q), "mean": float(q.mean()), "sd": float(q.std()),
                    "min": float(q.min()), "max": float(q.max())}
    return out


def markdown(results: dict[str, Any]) -> str:
    """The tables for the model card."""
    lad = results["ladders"]
    iqms = list(IQM_DIRECTION)
    others = list(results.get("other_models", {}))
    head = ("| modality | ladders | MedIQA | own phys_* column | physics target | "
            + " | ".join([k.removeprefix("iqm_") for k in iqms] + others) + " |")
    n_cols = 5 + len(iqms) + len(others)
    split = results.get("split", "test")
    lines = ["### Within-ladder SRCC (clean + 5 severities; 1.0 = perfect order), "
             f"{split} sources",
             "", head, "|" + "---|" * n_cols]

    def fmt(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:.3f}"

    def row(name: str, e: dict[str, Any]) -> str:
        best_iqm = max((e[k] for k in iqms if math.isfinite(e[k])), default=math.nan)
        mark = " (beats every IQM)" if math.isfinite(best_iqm) and e["model"] > best_iqm else ""
        return (f"| {name} | {e['n']} | **{fmt(e['model'])}**{mark} | "
                f"{fmt(e.get('family_head', math.nan))} | {fmt(e['physics'])} | "
                + " | ".join(fmt(e.get(k, math.nan)) for k in iqms + others) + " |")

    for mod, e in lad["by_modality"].items():
        lines.append(row("all" if mod == "*" else mod, e))
    lines += ["", "### Within-ladder SRCC per family (all modalities)", "", head,
              "|" + "---|" * n_cols]
    for key, e in lad["by_family"].items():
        if key.startswith("*/"):
            lines.append(row(key[2:], e))
    lines += ["", "### Within-ladder SRCC per modality and family (MedIQA)", "",
              "| modality/family | ladders | MedIQA | own phys_* column | best IQM (name) |",
              "|---|---|---|---|---|"]
    for key, e in lad["by_family"].items():
        if not key.startswith("*/"):
            best = max(iqms, key=lambda k: e[k] if math.isfinite(e[k]) else -9)
            lines.append(f"| {key} | {e['n']} | {fmt(e['model'])} | "
                         f"{fmt(e.get('family_head', math.nan))} | {fmt(e[best])} "
                         f"({best.removeprefix('iqm_')}) |")
    rc = results["random_chains"]

    def ci(entry: dict[str, Any], m: str) -> str:
        v = entry[m]
        return f"{v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"

    lines += ["", "### Score vs physics-derived target on random simulator chains "
              f"({split} sources)",
              "", "| modality | n | SRCC | PLCC | KRCC | RMSE | SRCC, metadata removed |",
              "|---|---|---|---|---|---|---|"]
    for mod, e in rc["metadata_known"].items():
        u = rc["metadata_removed"][mod]
        lines.append(f"| {mod} | {e['n']} | {ci(e, 'srcc')} | {ci(e, 'plcc')} | "
                     f"{ci(e, 'krcc')} | {ci(e, 'rmse')} | {ci(u, 'srcc')} |")
    lines += ["", f"### Context head with metadata removed (same {split} images)", "",
              "| modality | n | modality accuracy | modality mistaken for (count) "
              "| anatomy accuracy |", "|---|---|---|---|---|"]
    for mod, e in rc["context_head_metadata_removed"].items():
        wrong = ", ".join(f"{k} {v}" for k, v in e.get("modality_mistaken_for", {}).items())
        lines.append(f"| {mod} | {e['n']} | {e['modality_acc']:.3f} | {wrong or '-'} "
                     f"| {e['anatomy_acc']:.3f} |")
    if "unseen_ladders" in results:
        lines += ["", "### Proxy for unseen degradations: simulators on modalities they were "
                  "never trained for (within-ladder SRCC)", "",
                  "| modality/family | ladders | MedIQA | best IQM (name) |",
                  "|---|---|---|---|"]
        for key, e in results["unseen_ladders"]["by_family"].items():
            if not key.startswith("*/"):
                best = max(iqms, key=lambda k: e[k] if math.isfinite(e[k]) else -9)
                lines.append(f"| {key} | {e['n']} | {fmt(e['model'])} | {fmt(e[best])} "
                             f"({best.removeprefix('iqm_')}) |")
    lines += ["", f"### Clean {split} slices, whole, as `mediqa score` sees them", "",
              "| modality | slices | mean score | sd | min | max |", "|---|---|---|---|---|---|"]
    for mod, e in results["clean"].items():
        lines.append(f"| {mod} | {e['n']} | {e['mean']:.1f} | {e['sd']:.1f} | {e['min']:.1f} | "
                     f"{e['max']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--corpus", default="corpus")
    ap.add_argument("--out", default=None,
                    help="folder for accuracy.json/.md (default weights/metrics; with --split "
                         "val runs/val_accuracy, so a val run never overwrites the card's "
                         "test numbers)")
    ap.add_argument("--per-modality", type=int, default=8, help="ladder base images per modality")
    ap.add_argument("--chains", type=int, default=400, help="random-chain images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="test", choices=("test", "val"),
                    help="val: choose between candidates without looking at the test sources")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=WEIGHTS",
                    help="also score the ladders with these weights (a column each)")
    ap.add_argument("--views", type=int, default=1, choices=VIEW_COUNTS,
                    help="networks score ladders and random chains averaged over this many "
                         "mirror views, as `mediqa score --views` (clean slices: one view)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, card = load_weights(args.weights)
    pool = load_pool(args.corpus, args.split)
    recipe = evaluation_recipe(card)
    # The same network untrained: what the ladders give by chance (random features of an
    # image often move monotonically with an artefact), so the gain of training is visible.
    torch.manual_seed(args.seed)
    others: dict[str, MedIQANet] = {"random init": MedIQANet(model.config).eval()}
    other_cards: dict[str, Any] = {"random init": "the same network, untrained "
                                                  f"(torch.manual_seed({args.seed}))"}
    for spec in args.compare:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"--compare wants NAME=WEIGHTS, got {spec!r}")
        others[name], card_other = load_weights(path)
        other_cards[name] = {"weights": path, "sha256": card_other.get("sha256")}
    rows = ladders(model, pool, args.per_modality, args.seed, recipe, others=others,
                   views=args.views)
    unseen_rows = ladders(model, pool, max(1, args.per_modality // 2), args.seed, recipe,
                          unseen=True, others=others, views=args.views)
    compared = [spec.partition("=")[0] for spec in args.compare]
    add_mean_scores(rows, compared)
    add_mean_scores(unseen_rows, compared)
    for name in compared:
        other_cards[f"{name} + model (mean)"] = {"mean of": [args.weights,
                                                             other_cards[name]["weights"]]}
    results = {
        "other_models": other_cards,
        "weights_sha256": card.get("sha256"),
        "ladder_views": args.views,
        "command": "python benchmarks/accuracy.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "split": args.split,
        f"{args.split}_sources": sorted({p.source for p in pool}),
        "ladders": summarise_ladders(rows),
        "unseen_ladders": summarise_ladders(unseen_rows),
        "random_chains": random_chains(model, pool, args.chains, args.seed, recipe,
                                       views=args.views),
        "clean": clean_scores(model, pool, recipe),
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out or ("weights/metrics" if args.split == "test" else "runs/val_accuracy"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "accuracy_ladders.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "accuracy.md").write_text(markdown(results))
    print(markdown(results))
    print(f"{len(rows)} ladders, {results['seconds']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
