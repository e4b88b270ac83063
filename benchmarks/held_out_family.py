"""Held-out degradation family: does a model trained WITHOUT one family still rank it?

Two pre-training runs with the same recipe and budget, one on every family and one with a family
excluded (`mediqa-train pretrain --exclude-family motion`). Both score the same severity ladders
on the test sources (`benchmarks/accuracy.py` ladders: clean + 5 severities, one seed each); the
table gives the mean within-ladder SRCC per family for both and the best classical IQM. The row
of the excluded family is the experiment; the other rows show what excluding it cost elsewhere.

Usage:
    python benchmarks/held_out_family.py --family motion --with runs/exp/A/weights \\
        --without runs/exp/C/weights --corpus corpus --out weights/metrics
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accuracy import IQM_DIRECTION, ladders, summarise_ladders
from mediqa_train.ladders import evaluation_recipe
from mediqa_train.pretrain import load_pool
from mediqa_train.quality import trained_shading_weight

from mediqa_cli.model.weights import load_weights
from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

WITHOUT = "without"


def markdown(result: dict[str, Any]) -> str:
    family = result["family"]
    iqms = list(IQM_DIRECTION)

    def fmt(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:.3f}"

    lines = [f"| family | ladders | trained on all families | trained without {family} | "
             "best classical IQM (name) |", "|---|---|---|---|---|"]
    for key, e in result["ladders"]["by_family"].items():
        if not key.startswith("*/"):
            continue
        name = key[2:]
        best = max(iqms, key=lambda k: e[k] if math.isfinite(e[k]) else -9)
        mark = "**" if name == family else ""
        lines.append(f"| {mark}{name}{mark} | {e['n']} | {fmt(e['model'])} | "
                     f"{fmt(e[WITHOUT])} | {fmt(e[best])} ({best.removeprefix('iqm_')}) |")
    held = [k for k in result["ladders"]["by_family"] if k.endswith(f"/{family}")
            and not k.startswith("*/")]
    if held:
        lines += ["", f"Per modality, family {family}:", "",
                  "| modality/family | ladders | all families | without |", "|---|---|---|---|"]
        for key in held:
            e = result["ladders"]["by_family"][key]
            lines.append(f"| {key} | {e['n']} | {fmt(e['model'])} | {fmt(e[WITHOUT])} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", required=True, choices=PHYSICAL_FAMILIES)
    ap.add_argument("--with", dest="with_all", required=True, help="weights trained on all")
    ap.add_argument("--without", required=True, help="weights trained without --family")
    ap.add_argument("--corpus", default="corpus")
    ap.add_argument("--out", default="weights/metrics")
    ap.add_argument("--per-modality", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, card = load_weights(args.with_all)
    without, card_without = load_weights(args.without)
    excluded = card_without["training"]["run_config"]["data"]["exclude_families"]
    if args.family not in excluded:
        ap.error(f"{args.without} was trained with {args.family} (excluded: {excluded})")
    if card["training"]["run_config"]["data"]["exclude_families"]:
        ap.error(f"{args.with_all} was trained with families excluded")
    shading = trained_shading_weight(card)
    if trained_shading_weight(card_without) != shading:
        ap.error("the two weights were trained on different quality targets (shading_weight)")
    pool = load_pool(args.corpus, "test")
    rows = ladders(model, pool, args.per_modality, args.seed,
                   evaluation_recipe(card),
                   others={WITHOUT: without})
    result = {
        "family": args.family,
        "command": "python benchmarks/held_out_family.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "with": {"weights": args.with_all, "sha256": card.get("sha256"),
                 "steps": card["training"]["steps"]},
        "without": {"weights": args.without, "sha256": card_without.get("sha256"),
                    "steps": card_without["training"]["steps"]},
        "ladders": summarise_ladders(rows),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "held_out_family.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "held_out_family.md").write_text(markdown(result))
    print(markdown(result))
    print(f"{len(rows)} ladders, {result['seconds']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
