"""`mediqa export`: write the installed network as deployable TorchScript / torch.export files.

The artifacts hold the network only (packed tensors in, per-slice outputs out); reading scans,
preprocessing and aggregation stay in Python. An exported program bakes in the per-slice patch
bound it was traced with, recorded next to it in export.json. Per-modality specialists
(`weights/specialists/<MODALITY>/`) are written beside it, one file per distinct network, and
export.json maps each modality to its files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mediqa_cli.model.export import export_model, script_model
from mediqa_cli.model.weights import (
    WeightsError,
    find_installed_weights,
    load_specialists,
    load_weights,
)
from mediqa_cli.preprocess import DEFAULT_MAX_PATCHES

TORCHSCRIPT_FILE = "model.ts"
EXPORT_FILE = "model.pt2"
META_FILE = "export.json"


def export_artifacts(out: Path, fmt: str = "all", weights: Path | None = None) -> list[Path]:
    """Write model.ts and/or model.pt2 (+ export.json) under out; return the written paths."""
    source = weights or find_installed_weights()
    if source is None:
        raise WeightsError("no weights installed: nothing to export (train or set MEDIQA_WEIGHTS)")
    model, card = load_weights(source, "cpu")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    meta = {
        "weights": str(source),
        "version": card.get("version"),
        "sha256": card.get("sha256"),
        "torch": torch.__version__,
        "max_seqlen": DEFAULT_MAX_PATCHES,
        "inputs": "patches, coords, spacing, cu_seqlens, max_seqlen, modality, anatomy, task",
        "note": "call the exported program with max_seqlen equal to the value above",
    }
    written += _write_network(model, out, "model", fmt)
    specialists: dict[str, list[str]] = {}
    by_digest: dict[str, list[str]] = {}
    for modality, (network, network_card) in load_specialists(source, model.config).items():
        digest = str(network_card["sha256"])
        if digest not in by_digest:
            paths = _write_network(network, out, f"specialist-{digest[:12]}", fmt)
            written += paths
            by_digest[digest] = [p.name for p in paths]
        specialists[modality] = by_digest[digest]
    if specialists:
        meta["specialists"] = specialists
    meta_path = out / META_FILE
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    written.append(meta_path)
    return written


def _write_network(model: torch.nn.Module, out: Path, stem: str, fmt: str) -> list[Path]:
    """`stem`.ts and/or `stem`.pt2 of one network under out."""
    written: list[Path] = []
    if fmt in ("torchscript", "all"):
        path = out / f"{stem}{Path(TORCHSCRIPT_FILE).suffix}"
        torch.jit.save(script_model(model), str(path))
        written.append(path)
    if fmt in ("export", "all"):
        path = out / f"{stem}{Path(EXPORT_FILE).suffix}"
        torch.export.save(export_model(model, DEFAULT_MAX_PATCHES), str(path))
        written.append(path)
    return written
