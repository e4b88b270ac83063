"""Weights on disk: safetensors + JSON config + a model card carrying the file's sha256.

A weights directory holds exactly:
  model.safetensors   tensors only (never a pickle)
  config.json         ModelConfig.to_dict()
  model_card.json     {"name", "version", "sha256", "parameters", "config", "members",
                       ...training facts}
  MODEL_CARD.md       the same, for people

An ensemble (model/ensemble.py) is the same folder: its tensors are `members.<i>.<name>`, the
card's "members" says how many (1, or absent, for one network), and config.json is the one
config every member shares.

A folder may also hold `specialists/<MODALITY>/`, each a weights folder of the same form and
the same config: the network that scores scans of that modality in place of the main one
(`mediqa_cli.scoring.ModelScorer`). Why: a network trained further on one modality's faults
can lift that modality while the drift it brings to the others costs them more than it gains
(benchmarks/RESULTS.md, "v0.10.0"); a specialist keeps both. Same config, so the slices are
tokenised once; a scan whose metadata names the modality goes to the specialist alone, and one
whose modality is guessed is routed by the main network's guess.

Loading checks the checksum before reading a tensor and checks every tensor's name and shape
against the config, so a corrupted download, a stray file or a config from another model is
refused with a message that says which. `find_installed_weights` returns None when nothing is
installed: the CLI then reports "no weights installed" and leaves scores empty rather than
scoring with a random network.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.ensemble import MedIQAEnsemble, members_of
from mediqa_cli.model.network import MedIQANet, count_parameters

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "model_card.json"
CARD_MD = "MODEL_CARD.md"
ENV_VAR = "MEDIQA_WEIGHTS"
SPECIALISTS_DIR = "specialists"
REPO_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def _packaged_weights_dir() -> Path:
    """weights/ of a checkout, else the installed `mediqa_weights` data package."""
    if REPO_WEIGHTS_DIR.is_dir():
        return REPO_WEIGHTS_DIR
    import importlib.util

    spec = importlib.util.find_spec("mediqa_weights")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return REPO_WEIGHTS_DIR


class WeightsError(RuntimeError):
    """Weights that must not be used: missing, corrupted, or not matching their config."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(
    model: nn.Module,
    directory: str | os.PathLike[str],
    name: str = "mediqa",
    version: str = "0",
    card: Mapping[str, Any] | None = None,
) -> Path:
    """Write a weights directory (see module docstring); returns its path.

    card: extra model-card facts (data, training command, metrics); the checksum, parameter
    count and config are filled in here so they cannot drift from the files.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "name": name, "version": version})
    os.replace(tmp, out / WEIGHTS_FILE)
    config = model.config.to_dict()
    _write_text(out / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    facts = dict(card or {})
    facts.update(name=name, version=version, sha256=sha256_file(out / WEIGHTS_FILE),
                 weights_file=WEIGHTS_FILE, parameters=count_parameters(model), config=config)
    # Only an ensemble says so: a one-network folder stays as every earlier version wrote it.
    n_members = len(members_of(model))
    if n_members > 1:
        facts["members"] = n_members
    else:
        facts.pop("members", None)
    _write_text(out / CARD_FILE, json.dumps(facts, indent=2, sort_keys=True) + "\n")
    _write_text(out / CARD_MD, _card_markdown(facts))
    return out


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _card_markdown(facts: Mapping[str, Any]) -> str:
    lines = [f"# {facts['name']} {facts['version']}", "",
             f"- weights: `{facts['weights_file']}`",
             f"- sha256: `{facts['sha256']}`",
             f"- parameters: {facts['parameters']:,}", ""]
    for key in sorted(set(facts) - {"name", "version", "weights_file", "sha256", "parameters",
                                    "config"}):
        lines.append(f"- {key}: {json.dumps(facts[key])}")
    lines += ["", "## Config", "", "```json", json.dumps(facts["config"], indent=2, sort_keys=True),
              "```", ""]
    return "\n".join(lines)


def read_card(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / CARD_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: model card missing") from exc
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: model card is not valid JSON ({exc})") from exc


def _build(config: ModelConfig, n_members: int) -> nn.Module:
    """The network of `config`, uninitialised: `load_weights` fills every tensor (it refuses a
    file with any missing), so random initial values would only be overwritten."""
    if n_members == 1:
        return MedIQANet(config, initialise=False)
    return MedIQAEnsemble(config, n_members, initialise=False)


def load_weights(
    directory: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[Any, dict[str, Any]]:
    """Build the model from config.json and load model.safetensors, verified; returns (model, card).

    Refuses (WeightsError) a sha256 that differs from the model card, a config.json that differs
    from the card's, and any missing, unexpected or mis-shaped tensor. The model is in eval mode.
    """
    root = Path(directory)
    card = read_card(root)
    weights_path = root / WEIGHTS_FILE
    if not weights_path.is_file():
        raise WeightsError(f"{weights_path}: weights file missing")
    expected = str(card.get("sha256", "")).lower()
    if not expected:
        raise WeightsError(f"{root / CARD_FILE}: no sha256 recorded, refusing unverified weights")
    actual = sha256_file(weights_path)
    if actual != expected:
        raise WeightsError(
            f"{weights_path}: sha256 {actual} does not match the model card's {expected}; "
            "the file is corrupted or not the one the card describes"
        )
    try:
        config_data = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
        config = ModelConfig.from_dict(config_data)
    except FileNotFoundError as exc:
        raise WeightsError(f"{root / CONFIG_FILE}: config missing") from exc
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{root / CONFIG_FILE}: invalid config ({exc})") from exc
    if "config" in card and card["config"] != config_data:
        raise WeightsError(f"{root / CONFIG_FILE} differs from the config in {CARD_FILE}")
    n_members = card.get("members", 1)
    if isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 1:
        raise WeightsError(f"{root / CARD_FILE}: members must be a positive integer, "
                           f"got {n_members!r}")
    # Built once, on the CPU: its non-persistent buffers (PatchPhysics' filters) need the real
    # constructor, so a meta-device build would have to be redone, and a meta build pays for
    # importing torch's dynamo on its first operation (about a second of every run's start-up).
    model = _build(config, n_members)
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(weights_path), framework="pt", device="cpu") as fh:
        for key in fh.keys():  # noqa: SIM118  (safe_open is not a mapping)
            tensors[key] = fh.get_tensor(key)
    in_file = len({k.split(".")[1] for k in tensors if k.startswith("members.")}) or 1
    if in_file != n_members:
        raise WeightsError(f"{weights_path} holds {in_file} network(s) but {root / CARD_FILE} "
                           f"says members={n_members}")
    problems = [f"missing {k}" for k in sorted(set(wanted) - set(tensors))]
    problems += [f"unexpected {k}" for k in sorted(set(tensors) - set(wanted))]
    problems += [
        f"{k}: file {tuple(tensors[k].shape)} vs config {wanted[k]}"
        for k in sorted(set(wanted) & set(tensors)) if tuple(tensors[k].shape) != wanted[k]
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5
                                           else "")
        raise WeightsError(f"{weights_path} does not match {root / CONFIG_FILE}: {shown}")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), card


def specialist_folders(directory: str | os.PathLike[str]) -> list[Path]:
    """The folder's `specialists/<MODALITY>/` sub-folders, sorted (none: an empty list)."""
    root = Path(directory) / SPECIALISTS_DIR
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def load_specialists(
    directory: str | os.PathLike[str], config: ModelConfig, device: str | torch.device = "cpu"
) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The folder's per-modality networks, {modality: (model, card)}, each verified as
    load_weights does; empty when the folder has none.

    Refuses (WeightsError) a specialist named after no modality of the main config, one for
    OTHER (an image nothing names is not routed), and one whose config differs from the main
    network's (the slices are tokenised once, by the main config).
    """
    found: dict[str, tuple[Any, dict[str, Any]]] = {}
    named = [m for m in config.modalities if m != "OTHER"]
    for folder in specialist_folders(directory):
        if folder.name not in named:
            raise WeightsError(f"{folder}: a specialist must be named after one of the "
                               f"modalities {', '.join(named)}")
        model, card = load_weights(folder, device)
        if model.config != config:
            raise WeightsError(f"{folder / CONFIG_FILE} differs from the main network's config; "
                               "a specialist must share it")
        found[folder.name] = (model, card)
    return found


def is_weights_dir(path: str | os.PathLike[str]) -> bool:
    root = Path(path)
    return all((root / f).is_file() for f in (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE))


def find_installed_weights(repo_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The weights directory to use, or None when none is installed.

    $MEDIQA_WEIGHTS wins when set; it must then name a weights directory (an error otherwise,
    since the user asked for it explicitly). Else the repo's weights/ folder, if it holds weights.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        if not is_weights_dir(env):
            raise WeightsError(
                f"{ENV_VAR}={env} is not a weights directory "
                f"(needs {WEIGHTS_FILE}, {CONFIG_FILE} and {CARD_FILE})"
            )
        return Path(env)
    root = Path(repo_dir) if repo_dir is not None else _packaged_weights_dir()
    return root if is_weights_dir(root) else None


__all__ = [
    "ENV_VAR",
    "WeightsError",
    "find_installed_weights",
    "is_weights_dir",
    "load_specialists",
    "load_weights",
    "read_card",
    "save_weights",
    "specialist_folders",
    "sha256_file",
]
