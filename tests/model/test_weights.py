"""Weights files: round trip, checksum refusal, config disagreement, discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.packing import example_batch
from mediqa_cli.model.weights import (
    CARD_FILE,
    CONFIG_FILE,
    ENV_VAR,
    WEIGHTS_FILE,
    WeightsError,
    find_installed_weights,
    load_weights,
    save_weights,
    sha256_file,
)

CFG = ModelConfig.tiny()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[MedIQANet, Path]:
    torch.manual_seed(0)
    model = MedIQANet(CFG).eval()
    return model, save_weights(model, tmp_path / "w", version="test",
                               card={"training": "unit test"})


def test_round_trip_gives_the_same_scores_and_a_complete_card(
    saved: tuple[MedIQANet, Path],
) -> None:
    model, root = saved
    loaded, card = load_weights(root)
    assert not loaded.training
    batch = example_batch(CFG)
    with torch.inference_mode():
        for a, b in zip(model(*batch.args()), loaded(*batch.args())):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
    # The loader builds the network without random initialisation: every tensor, buffers
    # included, must come from the file or the constructor's fixed filters.
    expected = model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    assert card["sha256"] == sha256_file(root / WEIGHTS_FILE)
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert card["training"] == "unit test" and card["config"] == CFG.to_dict()
    assert card["sha256"] in (root / "MODEL_CARD.md").read_text()


def test_a_modified_weights_file_is_refused_by_checksum(saved: tuple[MedIQANet, Path]) -> None:
    _, root = saved
    tensors = load_file(str(root / WEIGHTS_FILE))
    tensors["quality_head.bias"] += 1.0
    save_file(tensors, str(root / WEIGHTS_FILE))
    with pytest.raises(WeightsError, match="sha256 .* does not match"):
        load_weights(root)


def test_a_card_without_checksum_is_refused(saved: tuple[MedIQANet, Path]) -> None:
    _, root = saved
    card = json.loads((root / CARD_FILE).read_text())
    del card["sha256"]
    (root / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="no sha256"):
        load_weights(root)


def test_a_config_that_disagrees_with_the_weights_is_refused(
    saved: tuple[MedIQANet, Path],
) -> None:
    _, root = saved
    wider = ModelConfig(width=128, depth=2, heads=4, mlp_ratio=2.0, pos_grid=8,
                        spacing_hidden=16, context_depth=1).to_dict()
    (root / CONFIG_FILE).write_text(json.dumps(wider))
    card = json.loads((root / CARD_FILE).read_text())
    card["config"] = wider  # a consistent card, so the shape check is what catches it
    (root / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=r"does not match .*config.json: .*\(64.*vs config"):
        load_weights(root)


def test_config_edited_apart_from_the_card_is_refused(saved: tuple[MedIQANet, Path]) -> None:
    _, root = saved
    cfg = json.loads((root / CONFIG_FILE).read_text())
    cfg["mlp_ratio"] = 4.0
    (root / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="differs from the config"):
        load_weights(root)


def test_weights_are_never_unpickled(saved: tuple[MedIQANet, Path]) -> None:
    _, root = saved
    torch.save(MedIQANet(CFG).state_dict(), root / WEIGHTS_FILE)  # a pickle in disguise
    card = json.loads((root / CARD_FILE).read_text())
    card["sha256"] = sha256_file(root / WEIGHTS_FILE)
    (root / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(Exception) as info:
        load_weights(root)
    assert not isinstance(info.value, AssertionError)


def test_find_installed_weights(
    saved: tuple[MedIQANet, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, root = saved
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert find_installed_weights(tmp_path / "empty") is None
    assert find_installed_weights(root) == root
    monkeypatch.setenv(ENV_VAR, str(root))
    assert find_installed_weights(tmp_path / "empty") == root
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(WeightsError, match=ENV_VAR):
        find_installed_weights()
