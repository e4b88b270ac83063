"""A pre-training run's files on disk: resumable checkpoints and cycle-end snapshots.

Checkpoints (safetensors weights + `torch.save` optimizer state + JSON step state) are written
every `ckpt_every` steps and at the end, atomically (a temporary folder renamed), keeping the
last two; `load_checkpoint` restores the latest. Snapshots are the weights at each cosine
cycle's end (`RUN/snapshots/`), the members of a snapshot ensemble. Shipped weights are not
written here: `mediqa_cli.model.weights.save_weights` writes those (safetensors + model card).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mediqa_cli.model.network import MedIQANet


def save_checkpoint(out: Path, model: MedIQANet, opt: torch.optim.Optimizer,
                    state: dict[str, Any], keep: int = 2) -> Path:
    """out/checkpoints/step_NNNNNN/{model.safetensors, optimizer.pt, state.json} + latest.json.

    The optimizer state is a torch.save pickle: acceptable in a private checkpoint, never in
    shipped weights (those are safetensors only, written by `save_weights`).
    """
    root = out / "checkpoints"
    final = root / f"step_{state['step']:06d}"
    tmp = root / f".tmp_step_{state['step']:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(tmp / "model.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest = root / "latest.json"
    latest.with_suffix(".tmp").write_text(json.dumps({"path": final.name}), encoding="utf-8")
    os.replace(latest.with_suffix(".tmp"), latest)
    olds = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in olds[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(out: Path, model: MedIQANet, opt: torch.optim.Optimizer,
                    device: torch.device) -> dict[str, Any] | None:
    """Restore the latest checkpoint under out/, returning its state (None when there is none)."""
    latest = out / "checkpoints" / "latest.json"
    if not latest.exists():
        return None
    ckpt = out / "checkpoints" / json.loads(latest.read_text())["path"]
    model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)))
    opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device,
                                   weights_only=True))
    return json.loads((ckpt / "state.json").read_text())


def snapshot_path(out: Path, index: int) -> Path:
    """Where a run keeps the weights of its index-th cycle end (1-based)."""
    return out / "snapshots" / f"cycle_{index}.safetensors"


def save_snapshot(out: Path, index: int, model: torch.nn.Module) -> Path:
    """Keep the weights of the index-th cycle end (1-based) at `snapshot_path`."""
    path = snapshot_path(out, index)
    path.parent.mkdir(exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(path))
    return path


__all__ = ["load_checkpoint", "save_checkpoint", "save_snapshot", "snapshot_path"]
