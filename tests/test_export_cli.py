"""`mediqa export` writes artifacts that reload and agree with the eager network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mediqa_cli.cli import app
from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.packing import example_batch
from mediqa_cli.model.weights import load_weights, save_weights


def test_exported_artifacts_reload_and_match_eager(tmp_path: Path):
    torch.manual_seed(1)
    weights = save_weights(MedIQANet(ModelConfig.tiny()).eval(), tmp_path / "w", version="x1")
    result = CliRunner().invoke(app, ["export", "--out", str(tmp_path / "art"),
                                      "--weights", str(weights)])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "art" / "export.json").read_text())
    model, _ = load_weights(weights)
    batch = example_batch(model.config, sizes=(7, 12, 3))
    expected = model(*batch.args())
    scripted = torch.jit.load(str(tmp_path / "art" / "model.ts"))
    batch_fixed = example_batch(model.config, sizes=(7, 12, 3))
    batch_fixed.max_seqlen = meta["max_seqlen"]
    program = torch.export.load(str(tmp_path / "art" / "model.pt2")).module()
    for got in (scripted(*batch.args()), program(*batch_fixed.args())):
        for a, b in zip(expected, got):
            torch.testing.assert_close(a.float(), b.float(), atol=1e-4, rtol=1e-4)


def test_export_without_weights_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MEDIQA_WEIGHTS", str(tmp_path / "missing"))
    result = CliRunner().invoke(app, ["export", "--out", str(tmp_path / "art")])
    assert result.exit_code == 6


def test_specialists_are_exported_once_per_network_and_mapped_in_export_json(tmp_path: Path):
    torch.manual_seed(1)
    weights = save_weights(MedIQANet(ModelConfig.tiny()).eval(), tmp_path / "w", version="x1")
    torch.manual_seed(2)
    special = save_weights(MedIQANet(ModelConfig.tiny()).eval(),
                           weights / "specialists" / "HISTO", version="s1")
    shutil.copytree(special, weights / "specialists" / "XR")  # one network, two modalities
    result = CliRunner().invoke(app, ["export", "--out", str(tmp_path / "art"), "--format",
                                      "torchscript", "--weights", str(weights)])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "art" / "export.json").read_text())
    assert meta["specialists"]["HISTO"] == meta["specialists"]["XR"]
    (name,) = meta["specialists"]["HISTO"]
    model, _ = load_weights(special)
    batch = example_batch(model.config, sizes=(7, 12, 3))
    got = torch.jit.load(str(tmp_path / "art" / name))(*batch.args())
    for a, b in zip(model(*batch.args()), got):
        torch.testing.assert_close(a.float(), b.float(), atol=1e-4, rtol=1e-4)
    assert sorted(p.name for p in (tmp_path / "art").glob("*.ts")) == ["model.ts", name]
