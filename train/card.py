"""Publish a pre-training run as the shipped `weights/` folder, and write its model card.

Two steps, each one command, so every number in weights/MODEL_CARD.md comes from a file that a
command in this repo wrote:

    python -m mediqa_train.card publish --run runs/shipped --out weights --corpus corpus \
        --version 0.3.0
    python -m mediqa_train.card write --weights weights --corpus corpus

`publish` copies the run's final float32 safetensors with a fresh card (corpus facts added),
checks that the copy loads and scores exactly as the run's own weights, and copies the run's
metrics log. (float16 storage would halve the file, but the loader keeps the file's dtype,
so it would also halve the compute precision: not done.)
`write` assembles MODEL_CARD.md from model_card.json, the training log, the corpus summary and
the benchmark outputs in weights/metrics/ (accuracy.json from benchmarks/accuracy.py,
simulated_rater.json from `python -m mediqa_train.rater`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mediqa_train.quality import target_description, trained_shading_weight

from mediqa_cli.model.ensemble import assemble, members_of
from mediqa_cli.model.weights import CARD_FILE, CARD_MD, load_weights, save_weights

TRAINING_LOG = "training_log.jsonl"
METRICS_DIR = "metrics"


def publish(run: str | Path | Sequence[str | Path], out: str | Path, corpus: str,
            version: str, n_check: int = 32,
            member_indices: Sequence[int] | None = None) -> Path:
    """Copy run/weights to `out` with a fresh card; verify it loads and scores identically.

    Several runs (of one model config) are published as one ensemble (model/ensemble.py): the
    card's training facts are the first run's, and "ensemble_members" lists every run's.
    `member_indices` keeps only these networks (0-based, over all runs' networks in order),
    e.g. one cycle end of a snapshot run, to measure it alone; the card then names only the
    runs and cycle ends that were kept.
    """
    from mediqa_train.batches import BatchRecipe
    from mediqa_train.pretrain import load_pool
    from mediqa_train.validation import fixed_examples, predict

    run_dirs = [Path(run)] if isinstance(run, (str, Path)) else [Path(r) for r in run]
    loaded = [load_weights(d / "weights") for d in run_dirs]
    nets = [net for m, _ in loaded for net in members_of(m)]
    owner = [(r, j) for r, (m, _) in enumerate(loaded) for j in range(len(members_of(m)))]
    chosen = list(range(len(nets))) if member_indices is None else list(member_indices)
    if not chosen or any(not 0 <= i < len(nets) for i in chosen):
        raise ValueError(f"--member must name networks 0..{len(nets) - 1}, got {chosen}")
    model = assemble([nets[i] for i in chosen])
    kept = sorted({owner[i][0] for i in chosen})
    picked = [[owner[i][1] for i in chosen if owner[i][0] == r] for r in kept]  # cycle ends
    run_dirs, loaded = [run_dirs[r] for r in kept], [loaded[r] for r in kept]
    loaded = [(m, _with_snapshot_steps(c)) for m, c in loaded]
    card = {k: v for k, v in loaded[0][1].items()
            if k not in ("sha256", "parameters", "config", "weights_file", "name", "version",
                         "members", "ensemble_members", "published_members",
                         "accuracy_summary",
                         "simulated_rater_summary", "training_log_summary")}
    if member_indices is not None:
        card["published_members"] = chosen
        card.pop("validation", None)  # measured on all of the run's networks
        t = card.get("training", {})
        if len(kept) == 1 and t.get("snapshot_steps"):
            cycle_ends = picked[0]
            card["training"] = {
                **t, "snapshot_steps": [t["snapshot_steps"][j] for j in cycle_ends],
                "selected_weights": "cycle end(s) " + ", ".join(str(j + 1) for j in cycle_ends)
                + " of a snapshot run, published alone"}
    if len(run_dirs) > 1:
        card["ensemble_members"] = [
            _member_facts(d, c, ends if len(ends) < len(members_of(m)) else None)
            for d, (m, c), ends in zip(run_dirs, loaded, picked)]
    card["corpus"] = corpus_facts(corpus)
    # From the recipe, so a card never describes another target than the one trained on.
    targets = {target_description(trained_shading_weight(c)) for _, c in loaded}
    if len(targets) > 1:
        raise ValueError(f"the runs were trained on different quality targets: {targets}")
    card["score_meaning"] = targets.pop()
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    save_weights(model, target, name="mediqa", version=version, card=card)
    for index, run_dir in enumerate(run_dirs):
        shutil.copyfile(run_dir / "metrics.jsonl", target / member_log(index))
    copy, _ = load_weights(target)
    examples = fixed_examples(load_pool(corpus, "test"), model.config, BatchRecipe(), n_check,
                              seed=123)
    a = predict(model, examples, torch.device("cpu"))["quality"]
    b = predict(copy, examples, torch.device("cpu"))["quality"]
    if not np.array_equal(a, b):
        raise RuntimeError(f"published weights score differently from the run's ({target})")
    return target


def _with_snapshot_steps(card: dict[str, Any]) -> dict[str, Any]:
    """The card with `training.selected_step` an int: the first snapshot runs (2026-11-29)
    wrote their cycle ends there as a list, where later runs write `snapshot_steps`."""
    t = card.get("training", {})
    if not isinstance(t.get("selected_step"), list):
        return card
    return {**card, "training": {**t, "snapshot_steps": t["selected_step"],
                                 "selected_step": t.get("steps", t["selected_step"][-1])}}


def member_log(index: int) -> str:
    """The training-log file of ensemble member `index` (member 0's is TRAINING_LOG)."""
    return TRAINING_LOG if index == 0 else f"training_log.member{index}.jsonl"


def _member_facts(run_dir: Path, card: dict[str, Any],
                  cycle_ends: Sequence[int] | None = None) -> dict[str, Any]:
    """One run's line of an ensemble card. `cycle_ends` (0-based): the cycle ends kept when
    only some networks of a snapshot run are published, so the card says which step shipped."""
    t = card.get("training", {})
    facts = {"run": str(run_dir), "training_command": card.get("training_command"),
             "seed": t.get("run_config", {}).get("seed"), "steps": t.get("steps"),
             "selected_step": t.get("selected_step"), "wall_s": t.get("wall_s"),
             "threads": t.get("threads"), "device": t.get("device"),
             "weights_sha256": card.get("sha256")}
    snapshot_steps = t.get("snapshot_steps")
    if cycle_ends is not None and snapshot_steps:
        facts["cycles"] = int(t.get("run_config", {}).get("optim", {}).get("cycles", 1))
        facts["cycle_ends"] = [j + 1 for j in cycle_ends]
        facts["selected_step"] = [snapshot_steps[j] for j in cycle_ends]
    return facts


def corpus_facts(corpus: str | Path) -> dict[str, Any]:
    """Slices per modality and split, sources per split, and the manifest's sha256."""
    root = Path(corpus)
    summary = json.loads((root / "summary.json").read_text())
    sources: dict[str, list[str]] = {}
    for line in (root / "sources.jsonl").read_text().splitlines():
        row = json.loads(line)
        sources.setdefault(row["split"], []).append(f"{row['source']} ({row['modality']})")
    return {"slices": summary["slices"], "n_slices": summary["n_slices"],
            "regions_cut_from": summary.get("regions_cut_from", []),
            "sources": {k: sorted(v) for k, v in sorted(sources.items())},
            "manifest_sha256": hashlib.sha256((root / "manifest.jsonl").read_bytes()).hexdigest()}


def log_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Start/end of the loss curves (mean of the first/last 5 log rows) and the last val row."""
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_quality_srcc" in r]
    keys = ("loss", "severity", "quality", "context")

    def mean(part: Sequence[dict[str, Any]], k: str) -> float:
        return float(np.mean([r[k] for r in part]))

    out: dict[str, Any] = {"steps": train[-1]["step"] if train else 0,
                           "wall_min": round(train[-1]["elapsed_s"] / 60, 1) if train else 0,
                           "slices_seen": train[-1]["slices"] if train else 0}
    if train:
        out["start"] = {k: round(mean(train[:5], k), 4) for k in keys}
        out["end"] = {k: round(mean(train[-5:], k), 4) for k in keys}
        out["step_s_median"] = round(float(np.median([r["step_s"] for r in train])), 3)
        out["data_wait_s_median"] = round(float(np.median([r["data_wait_s"] for r in train])), 3)
    if val:
        out["val_first"] = {k: round(v, 4) for k, v in val[0].items()}
        out["val_last"] = {k: round(v, 4) for k, v in val[-1].items()}
    return out


def demo_table(report: Path) -> list[str]:
    """Markdown rows of the demo report: the scan, its prompt, score and grade."""
    import csv

    with open(report, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = ["| scan | modality (source) | anatomy (source) | score | grade | status |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.get('path', '')} | {r.get('modality', '')} "
                   f"({r.get('modality_source', '')}) | {r.get('anatomy', '')} "
                   f"({r.get('anatomy_source', '')}) | {r.get('score', '')} | "
                   f"{r.get('grade', '')} | {r.get('status', '')} |")
    return out


def _rater_verdict(rater: dict[str, Any]) -> str:
    """One sentence on whether fine-tuning beat the pre-trained score, from the intervals."""
    before = rater["before"]["all"]["srcc"]
    parts = []
    for n, entry in rater["after"].items():
        after = entry["test"]["all"]["srcc"]
        gain = entry.get("srcc_gain")
        if gain is not None:  # paired bootstrap over the same test images
            verdict = (f"gain {gain['value']:+.3f}, paired 95% interval [{gain['low']:+.3f}, "
                       f"{gain['high']:+.3f}]: "
                       + ("a reliable gain" if gain["low"] > 0 else
                          "a reliable loss" if gain["high"] < 0 else "no reliable change"))
        else:
            verdict = ("interval above the pre-trained one" if after["low"] > before["high"]
                       else "interval overlaps the pre-trained one: no reliable gain")
        parts.append(f"{n} labels {after['value']:.3f} ({verdict})")
    return (f"Result with these weights: SRCC {before['value']:.3f} before fine-tuning; "
            + "; ".join(parts) + ".")


def _run_dir(card: dict[str, Any]) -> str:
    """The run folder the card's training command wrote (what `publish --run` must read)."""
    words = str(card.get("training_command", "")).split()
    for flag, value in zip(words, words[1:]):
        if flag == "--out":
            return value
        if flag.startswith("--out="):
            return flag.split("=", 1)[1]
    return "runs/shipped"


def _shown(value: float, threshold: float) -> str:
    """`value` to 3 decimals, or as many more as it takes not to print a miss as the threshold
    (0.8999 against 0.9 is no "0.900")."""
    for digits in range(3, 9):
        text = f"{value:.{digits}f}"
        if (float(text) >= threshold) == (value >= threshold):
            return text
    return repr(value)


def _targets(acc: dict[str, Any]) -> list[str]:
    """Plain statements of which issue targets are met and which are not."""
    lines = []
    iqms = [k for k in next(iter(acc["ladders"]["by_modality"].values())) if k.startswith("iqm_")
            and not k.endswith("_n_valid")]
    for mod, e in acc["ladders"]["by_modality"].items():
        if mod == "*":
            continue
        best = max((e[k] for k in iqms if math.isfinite(e[k])), default=math.nan)
        ok_abs = e["model"] >= 0.9
        ok_iqm = math.isfinite(best) and e["model"] > best
        lines.append(f"- {mod}: within-ladder SRCC {_shown(e['model'], 0.9)} "
                     f"({'meets' if ok_abs else 'MISSES'} >= 0.9; "
                     f"{'above' if ok_iqm else 'NOT above'} the best classical IQM, "
                     f"{best:.3f})")
    ctx = acc["random_chains"]["context_head_metadata_removed"]["all"]
    lines.append(f"- modality accuracy without metadata: {_shown(ctx['modality_acc'], 0.95)} "
                 f"({'meets' if ctx['modality_acc'] >= 0.95 else 'MISSES'} >= 0.95)")
    return lines


PUBLIC_EVALUATION = "public_evaluation.json"


def public_evaluation_table(result: dict[str, Any]) -> list[str]:
    """Markdown lines for a `mediqa-train evaluate --out` file: per modality, within-ladder SRCC
    and cross-image AUC with 95 % intervals over patient groups, the compared weights beside
    them and the paired difference."""
    meta, summary = result["meta"], result["summary"]
    other = meta.get("compare_version")
    fold = meta.get("fold")
    lines = [f"`mediqa-train evaluate` on public patients of manifest fold {fold} "
             f"(the weights never trained on them), up to {meta['groups_per_modality']} groups "
             "per modality, clean + 5 levels per ladder made by TorchIO, scikit-image, scipy "
             "and Pillow (`train/eval_ladders.py`)"
             + (f", paired with {other} on the same ladders" if other else "") + ".", "",
             "| modality | groups | SRCC | AUC |" + (f" {other} SRCC | paired SRCC diff |"
                                                    if other else ""),
             "|---|---:|---|---|" + ("---:|---|" if other else "")]
    for name, m in sorted(summary["modalities"].items()):
        lo, hi = m["srcc_ci"]["model"]
        alo, ahi = m["auc_ci"]["model"]
        row = (f"| {name} | {m['groups']} | {m['srcc']['model']['mean']:.2f} [{lo:.2f}, "
               f"{hi:.2f}] | {m['auc']['model']:.2f} [{alo:.2f}, {ahi:.2f}] |")
        if other:
            plo, phi = m["paired_srcc"]
            row += f" {m['srcc']['compare']['mean']:.2f} | [{plo:+.3f}, {phi:+.3f}] |"
        lines.append(row)
    pooled = summary.get("pooled", {})
    if pooled:
        lo, hi = pooled["ci_model"]
        text = (f"Pooled (mean over modalities) SRCC: {pooled['srcc']['model']:.3f} "
                f"[{lo:.3f}, {hi:.3f}]")
        if other and "ci_difference" in pooled:
            dlo, dhi = pooled["ci_difference"]
            text += (f"; {other}: {pooled['srcc']['compare']:.3f}, paired difference "
                     f"[{dlo:+.3f}, {dhi:+.3f}]")
        lines += ["", text + "."]
    return lines


CALIBRATION_CHECK = "calibration_check.json"


def calibration_table(result: dict[str, Any]) -> list[str]:
    """Markdown lines for a `mediqa-train calibrate --check-out` file: how often each grade meets
    each ladder step on groups the map was not fitted on, raw bands beside calibrated ones."""
    lines = ["The score is calibrated (`calibration.json`, `mediqa_cli/calibration.py`): per "
             "modality, the grade cuts lie midway between the typical raw scores of neighbouring "
             "steps of graded degradation ladders (A: clean or the barely visible first step; B: "
             "like the second; C: the third; D: the fourth or fifth). Cross-fitted by patient "
             "group (each half graded by the map fitted on the other half), against the raw "
             "score cut at the same bands:", "",
             "| modality | images | steps 0-1 graded A | steps 3-5 graded C or D | balanced "
             "accuracy (C/D for steps 3-5 vs 0-1) |", "|---|---:|---|---|---|"]
    from mediqa_train.calibration import check_rows

    lines += [f"| {name} | {images} | " + " | ".join(rates) + " |"
              for name, images, rates in check_rows(result["check"])]
    return lines


def physics_head_lines(weights: Path) -> list[str]:
    """Markdown lines for the weights' physics-token reader (`physics_head.json`), if any: per
    modality, the tokens it weighs most, per token standard deviation in logit units."""
    from mediqa_cli.physics_head import PHYSICS_HEAD_FILE, PhysicsHead

    head = PhysicsHead.load(weights)
    if head is None:
        return []
    lines = ["The score adds to the network's quality logit a linear term of the physics tokens "
             f"(`{PHYSICS_HEAD_FILE}`, `mediqa_cli/physics_head.py`), fitted on "
             f"{head.fitted_on} by `mediqa-train physics-head`: a ranker that puts every "
             "simulated step below the one before, whatever the pre-training target says it "
             "costs, scaled to the given share of the network logit's spread and zero on the "
             "median clean slice. Modalities without a reader keep the network's score.", "",
             "| modality | tokens weighed most (logit change per token SD; + lowers the score) |",
             "|---|---|"]
    for modality, reader in sorted(head.readers.items()):
        order = np.argsort(-np.abs(reader.weights))[:5]
        shown = ", ".join(f"{head.features[i]} {reader.weights[i]:+.2f}" for i in order)
        lines.append(f"| {modality} | {shown} |")
    return lines


def specialist_lines(weights: Path) -> list[str]:
    """Markdown lines for the weights' per-modality specialists (`specialists/<MODALITY>/`):
    what each one is, how it was trained, and the command that reproduces it."""
    from mediqa_cli.model.weights import SPECIALISTS_DIR, specialist_folders

    folders = specialist_folders(weights)
    if not folders:
        return []
    lines = ["Scans of these modalities are scored by their own network, of the main network's "
             "config (`mediqa_cli.model.weights.load_specialists`): alone when metadata, the "
             "file name or an override names the modality (one forward pass), after the main "
             "network's guess otherwise (two passes; the prompt columns are the main "
             "network's). Every other scan is scored by the main network alone.", "",
             "| modality | network | training |", "|---|---|---|"]
    for folder in folders:
        card = json.loads((folder / CARD_FILE).read_text())
        t = card.get("training", {})
        rc = t.get("run_config", {})
        added = ", ".join(rc.get("data", {}).get("added_simulators", [])) or "none"
        lines.append(
            f"| {folder.name} | `{SPECIALISTS_DIR}/{folder.name}/{card['weights_file']}`, "
            f"sha256 `{card['sha256'][:12]}…` | {t.get('steps', '?')} steps from "
            f"`{rc.get('init_weights', 'scratch')}` (network {rc.get('init_member', 0)}) at "
            f"lr {rc.get('optim', {}).get('lr', '?')}, simulators added: {added}; "
            f"`{card.get('training_command', '')}` |")
    return lines


def write_card(weights: str | Path, corpus: str | Path | None = None) -> Path:
    """Rewrite weights/MODEL_CARD.md (and add the metrics to model_card.json)."""
    root = Path(weights)
    card = json.loads((root / CARD_FILE).read_text())
    metrics = root / METRICS_DIR
    acc = json.loads((metrics / "accuracy.json").read_text()) \
        if (metrics / "accuracy.json").exists() else None
    if acc is not None and acc.get("split", "test") != "test":
        raise ValueError(f"{metrics / 'accuracy.json'} was measured on the {acc['split']} "
                         "sources; the card reports the test sources (rerun "
                         "benchmarks/accuracy.py without --split)")
    rater = json.loads((metrics / "simulated_rater.json").read_text()) \
        if (metrics / "simulated_rater.json").exists() else None
    log_rows = [json.loads(x) for x in (root / TRAINING_LOG).read_text().splitlines()] \
        if (root / TRAINING_LOG).exists() else []
    if corpus is not None:
        card["corpus"] = corpus_facts(corpus)
    card["training_log_summary"] = log_summary(log_rows)
    if acc:
        card["accuracy_summary"] = {
            "within_ladder_srcc": {m: round(e["model"], 4)
                                   for m, e in acc["ladders"]["by_modality"].items()},
            "physics_target_srcc": acc["random_chains"]["metadata_known"]["all"]["srcc"],
            "context_modality_acc": acc["random_chains"]["context_head_metadata_removed"][
                "all"]["modality_acc"],
        }
    if rater:
        card["simulated_rater_summary"] = {
            "before": rater["before"]["all"]["srcc"],
            "after": {n: e["test"]["all"]["srcc"] for n, e in rater["after"].items()}}
    (root / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")

    t = card["training"]
    reader_lines = physics_head_lines(root)
    specialist_rows = specialist_lines(root)
    members = card.get("ensemble_members", [])
    s = card["training_log_summary"]
    rc = t["run_config"]
    cycles = int(rc["optim"].get("cycles", 1))
    shading = trained_shading_weight(card)
    cfg = card["config"]
    lines = [
        f"# MedIQA weights {card['version']}",
        "",
        "Pre-trained MedIQA scorer shipped with this repository (`mediqa score` finds it)."
        + (f" An ensemble of {len(members)} networks pre-trained independently with one recipe"
           f" (seeds {', '.join(str(m['seed']) for m in members)}): every output is the "
           "members' mean, so scoring costs the sum of their times." if members else "")
        + (f" A snapshot ensemble: the {card['members']} networks one run left at the ends of "
           f"its {cycles} cosine learning-rate cycles; every output is "
           "the members' mean, so scoring costs the sum of their times."
           if rc.get("snapshot_ensemble") and card.get("members") and not members else "")
        + (" Published from the runs' networks "
           + ", ".join(str(i) for i in card["published_members"]) + " only (0-based)."
           if "published_members" in card else ""),
        "",
        f"- file: `{card['weights_file']}` (float32 safetensors, "
        f"{(root / card['weights_file']).stat().st_size / 1e6:.1f} MB)",
        f"- sha256: `{card['sha256']}` (checked by `mediqa_cli.model.weights.load_weights`)",
        f"- parameters: {card['parameters']:,} (width {cfg['width']}, depth {cfg['depth']}, "
        f"{cfg['heads']} heads, context head after {cfg['context_depth']} blocks)",
        "",
        "## What the score means",
        "",
        "The score (0-100, higher is better) is the model's estimate of the **physics-derived "
        "reference quality**: SSIM between an image and its clean original after a simulated "
        "acquisition problem (`mediqa_train.quality`)"
        + (f", times 1 - {shading:g} x the severity of any simulated smooth bias field (MR "
           "coil bias, uneven illumination: shading, which SSIM cannot see)" if shading else "")
        + ". It is not an expert rating and was "
        "never fitted to one. The `phys_*` columns are the model's 0-1 severity per physical "
        "family. With the prompt `expert` these weights give the same physics score (they were "
        "pre-trained with both task prompts); `mediqa-train finetune` specialises `expert` "
        "to a site's own ratings.",
        *(["", "## Physics-token reader", "", *reader_lines] if reader_lines else []),
        *(["", "## Specialists", "", *specialist_rows] if specialist_rows else []),
        "",
        "## Reproduce",
        "",
        "```bash",
        "mediqa-train corpus --out corpus",
        *([m["training_command"] for m in members] if members else
          [card.get("training_command",
                    "mediqa-train pretrain --config shipped --out runs/shipped")]),
        "python -m mediqa_train.card publish "
        + " ".join(f"--run {r}" for r in ([m["run"] for m in members] if members
                                          else [_run_dir(card)]))
        + "".join(f" --member {i}" for i in card.get("published_members", []))
        + f" --out weights --corpus corpus --version {card['version']}",
        "python benchmarks/accuracy.py --weights weights --corpus corpus --out weights/metrics",
        "python -m mediqa_train.rater --base weights --corpus corpus --out runs/rater "
        "--metrics weights/metrics",
        "python -m mediqa_train.card write --weights weights --corpus corpus",
        "```",
        "",
        "## Training",
        "",
        f"- recipe: `train/configs/shipped.json`: AdamW (lr {rc['optim']['lr']}, weight decay "
        f"{rc['optim']['weight_decay']}, warmup {rc['optim']['warmup_steps']} steps, "
        + (f"{cycles} equal cosine cycles (restarts at the full lr), each down to "
           f"{rc['optim']['min_lr_ratio']} x lr, over the time budget), "
           if cycles > 1 else
           f"cosine to {rc['optim']['min_lr_ratio']} x lr at the end of the time budget), ")
        + "batches of at most "
        f"{rc['data']['max_tokens']} tokens packed like inference, crops "
        f"{rc['data']['crop_min']}-{rc['data']['crop_max']} px (CT <= "
        f"{rc['data']['ct_crop_max']}) or whole slices ({rc['data']['full_image_fraction']:.0%}),"
        f" groups of {rc['data']['group_size']} versions of one crop at rising severity (the "
        f"clean crop leads {rc['data']['clean_fraction']:.0%} of groups), "
        f"1-{rc['data']['max_chain']} simulators per image, "
        f"metadata dropout {rc['data']['metadata_dropout']:.0%}, seed {rc['seed']}",
        f"- loss: BCE on 0-1 family severities (x{rc['loss']['severity']}) + smooth L1 on "
        f"quality/100 (x{rc['loss']['quality']}) + modality and anatomy cross-entropy "
        f"(x{rc['loss']['context']}) + within-group logistic ranking of quality "
        f"(x{rc['loss'].get('rank', 0.0)})",
        f"- run: {s['steps']} steps in {s['wall_min']} min on {t['threads']} CPU thread(s) "
        f"({t['device']}), {s['slices_seen']:,} degraded slices seen; median step "
        f"{s.get('step_s_median')} s, median wait for data {s.get('data_wait_s_median')} s",
    ]
    if "start" in s:
        lines += [
            f"- loss start -> end (mean of first/last 5 log rows): total {s['start']['loss']} -> "
            f"{s['end']['loss']}; severity BCE {s['start']['severity']} -> "
            f"{s['end']['severity']}; quality {s['start']['quality']} -> {s['end']['quality']};"
            f" context CE {s['start']['context']} -> {s['end']['context']}",
        ]
    if "val_last" in s:
        v0, v1 = s["val_first"], s["val_last"]
        lines.append(
            f"- validation (val-split sources, metadata removed), step {v0['step']} -> "
            f"{v1['step']}: quality SRCC {v0['val_quality_srcc']} -> {v1['val_quality_srcc']}, "
            f"quality MAE {v0['val_quality_mae']} -> {v1['val_quality_mae']}, modality accuracy "
            f"{v0['val_modality_acc']} -> {v1['val_modality_acc']}")
    ladder_rows = [r for r in log_rows
                   if "val_ladder_srcc_modality_mean" in r and "snapshot" not in r]
    # The last row per cycle end (a resumed run may log one twice), for the ends shipped.
    snapshot_rows = sorted({r["snapshot"]: r for r in log_rows if "snapshot" in r}.values(),
                           key=lambda r: r["step"])
    snapshot_rows = [r for r in snapshot_rows if r["step"] in t.get("snapshot_steps", [])]
    if ladder_rows:
        chosen = t.get("selected_step", s["steps"])
        key = "val_ladder_srcc_modality_mean"
        at = next((r for r in ladder_rows if r["step"] == chosen), ladder_rows[-1])
        peak = max(ladder_rows, key=lambda r: r[key])
        lines.append(
            f"- severity ladders on the val sources (metadata removed; mean of per-modality "
            f"within-ladder SRCC), every {rc['val_every']} steps, live weights: "
            f"{ladder_rows[0][key]:.3f} at step {ladder_rows[0]['step']}, peak "
            f"{peak[key]:.3f} at step {peak['step']}, {ladder_rows[-1][key]:.3f} at the last "
            f"step")
        value = at.get(key, math.nan)
        if snapshot_rows:
            lines[-1] += (". Shipped: " + t.get("selected_weights", "the cycle ends") + ", "
                          + ", ".join(f"step {r['step']} ({r[key]:.3f})" for r in snapshot_rows))
        else:
            lines[-1] += (f". Shipped: step {chosen}, "
                          "live weights "
                          f"({t.get('selection', 'last step')}; {value:.3f})")
    lines.append(f"- full log: `{TRAINING_LOG}` (one JSON row per {rc['log_every']} steps)")
    for index, m in enumerate(members[1:], start=1):
        if "cycle_ends" in m:
            share = max(m["cycle_ends"]) / m["cycles"]
            lines.append(
                f"- ensemble member {index}: seed {m['seed']}, the network at the end of cosine "
                f"cycle {', '.join(map(str, m['cycle_ends']))} of {m['cycles']} (step "
                f"{', '.join(map(str, m['selected_step']))}, the first "
                f"{share * m['wall_s'] / 60:.0f} min) of a {m['wall_s'] / 60:.0f}-min run "
                f"({m['steps']} steps in all) of the same model, data and losses on "
                f"{m['threads']} CPU thread(s) (log `{member_log(index)}`); the lines above "
                "describe member 0")
            continue
        lines.append(
            f"- ensemble member {index}: the same recipe with seed {m['seed']}, {m['steps']} steps"
            f" in {m['wall_s'] / 60:.1f} min on {m['threads']} CPU thread(s), shipped step "
            f"{m['selected_step']} (log `{member_log(index)}`); the lines above describe member "
            "0")
    if "corpus" in card:
        c = card["corpus"]
        lines += ["", "## Data", "",
                  f"Real images shipped inside PyPI packages (../shared/DATA.md), "
                  f"{c['n_slices']} 2D slices, split by source group (manifest sha256 "
                  f"`{c['manifest_sha256'][:16]}...`). Slices per modality and split:", "",
                  "| modality | train | val | test |", "|---|---|---|---|"]
        for mod, per in sorted(c["slices"].items()):
            lines.append(f"| {mod} | {per.get('train', 0)} | {per.get('val', 0)} | "
                         f"{per.get('test', 0)} |")
        lines += ["", "Test sources (never seen in training): "
                  + ", ".join(c["sources"].get("test", [])) + ".",
                  "Cut into four disjoint regions because the modality ships one image: "
                  + ", ".join(c["regions_cut_from"]) + "."]
    public = metrics / PUBLIC_EVALUATION
    if public.exists():
        lines += ["", "## Patients never seen, degraded by code never trained on", "",
                  *public_evaluation_table(json.loads(public.read_text()))]
    check = metrics / CALIBRATION_CHECK
    if check.exists():
        lines += ["", "## What the grades mean", "",
                  *calibration_table(json.loads(check.read_text()))]
    if acc:
        lines += ["", "## Accuracy on held-out test sources", "",
                  f"Command: `{acc['command']}` ({acc['seconds']:.0f} s).", "",
                  (metrics / "accuracy.md").read_text().rstrip(), "",
                  "### Targets of the issue", "", *_targets(acc)]
    if rater:
        from mediqa_train.rater import results_table

        lines += ["", "## Expert fine-tuning, shown with a SIMULATED rater", "",
                  "No package ships expert-rated medical images, so `train/rater.py` defines a "
                  "SIMULATED rater: a fixed, non-linear, modality-dependent preference over the "
                  "simulators' physical parameters that differs from the pre-training target "
                  "(it minds motion, ghosting, streaks and blur far more than noise). Labels "
                  "are drawn on train/val-split images; SRCC is measured on "
                  f"{rater['n_test']} held-out test-split images (95% bootstrap intervals; "
                  "the gain of a fine-tuned model over the pre-trained one is bootstrapped "
                  "paired, over the same images). "
                  "It tests whether fine-tuning learns a rater's taste from few labels; it is "
                  "not clinical validation.", "", _rater_verdict(rater), "",
                  f"Command: `{rater.get('command', 'python -m mediqa_train.rater')}` "
                  f"({rater['seconds']:.0f} s).", "",
                  results_table(rater).rstrip()]
    demo = metrics / "demo_report.csv"
    if demo.exists():
        lines += ["", "## `mediqa demo` with these weights", "",
                  "Real packaged scans (`mediqa demo --out weights/metrics/demo_report.csv "
                  "--data-dir runs/demo_data`), no degradation applied:", "",
                  *demo_table(demo)]
    held = metrics / "held_out_family.json"
    lines += ["", "## Held-out degradation family", ""]
    if held.exists():
        h = json.loads(held.read_text())
        lines += [f"Two pre-training runs with the same recipe and budget (shorter than the "
                  f"shipped run): one on every family ({h['with']['steps']} steps), one never "
                  f"shown **{h['family']}** ({h['without']['steps']} steps, "
                  f"`--exclude-family {h['family']}`). Both score the same test-source ladders. "
                  f"Command: `{h['command']}` ({h['seconds']:.0f} s).",
                  *([h["note"]] if h.get("note") else []), "",
                  (metrics / "held_out_family.md").read_text().rstrip()]
    else:
        lines.append("Not measured for these weights: run `benchmarks/held_out_family.py`.")
    lines += ["", "## Limitations", "",
              "- The corpus is small: a few dozen real sources, most modalities have one test "
              "image (cut into regions where the modality ships only one), so per-modality "
              "test numbers rest on crops of one or two images and their intervals are wide.",
              "- The score measures how far an image is from what the simulators consider its "
              "clean version. Artefacts no simulator models (metal, contrast timing, "
              "positioning, wrong anatomy coverage) are not measured.",
              "- Images that were already degraded when acquired count as 'clean' in training.",
              "- Radiograph exposure errors are simulated on 'for presentation' images, taking "
              "their 1st..99th grey-level percentiles to span 5 stops of dose and the most "
              "exposed pixels to sit at the detector's saturation (`XRExposure`); a raw "
              "'for processing' image, linear in dose, does not fit that model.",
              *(["- The target is SSIM, which a smooth intensity non-uniformity (MR bias "
                 "field, uneven illumination) barely moves: such ladders differ by a few "
                 "points of target from clean to worst (`physics` in "
                 "metrics/accuracy_ladders.jsonl), so the score hardly ranks them; read them "
                 "in the classical IQMs."] if not shading else
                ["- Shading enters the target through the simulator's known field strength, "
                 "not through a measurement of the images (none separated it from noise and "
                 "defocus); a real image's shading is judged only as well as the model learned "
                 "to see it from simulated fields."]),
              "- The context head has seen few anatomies per modality; its anatomy guess is "
              "weak, and a prompt from metadata is preferred whenever there is one.",
              "- Not a medical device; do not use for clinical decisions.",
              "", "## Config", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```",
              ""]
    (root / CARD_MD).write_text("\n".join(lines), encoding="utf-8")
    return root / CARD_MD


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mediqa_train.card", description=__doc__.split(
        "\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish", help="run folder -> weights folder (float32, verified)")
    p.add_argument("--run", required=True, action="append",
                   help="pre-training run folder; repeat to publish an ensemble of runs")
    p.add_argument("--out", default="weights")
    p.add_argument("--corpus", default="corpus")
    p.add_argument("--version", required=True,
                   help="the weights' version, written into the card (e.g. 0.3.0)")
    p.add_argument("--member", type=int, action="append", default=None,
                   help="publish only this network of the runs' ensemble (0-based); repeatable")
    w = sub.add_parser("write", help="(re)write MODEL_CARD.md from the metrics files")
    w.add_argument("--weights", default="weights")
    w.add_argument("--corpus", default=None)
    args = ap.parse_args(argv)
    if args.cmd == "publish":
        print(publish(args.run, args.out, args.corpus, args.version,
                      member_indices=args.member))
    else:
        print(write_card(args.weights, args.corpus))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
