"""Per-modality specialists (`weights/specialists/<MODALITY>/`): routing, version, refusals.

Small randomly initialised networks stand in for trained weights: the tests check which
network scores which scan, not the quality of the score.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.weights import SPECIALISTS_DIR, save_weights
from mediqa_cli.runner import ScoreRequest, run_score
from mediqa_cli.scoring import describe_installed_weights


def _scores(root: Path, out: Path) -> tuple[int, dict[str, dict[str, str]]]:
    code = run_score(ScoreRequest(paths=[str(root)], out=str(out), workers=0, quiet=True,
                                  precision="fp32"))
    rows = list(csv.DictReader(open(out))) if out.exists() else []
    return code, {Path(r["path"]).name: r for r in rows}


def _network(seed: int, config: ModelConfig | None = None) -> MedIQANet:
    torch.manual_seed(seed)
    return MedIQANet(config or ModelConfig.tiny()).eval()


def test_a_specialist_scores_its_modality_and_the_main_network_the_rest(
    weights_dir: Path, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _, main_alone = _scores(archive, tmp_path / "main.csv")
    special = save_weights(_network(1), tmp_path / "ct_as_main", version="s1")
    monkeypatch.setenv("MEDIQA_WEIGHTS", str(special))
    _, special_alone = _scores(archive, tmp_path / "special.csv")

    shutil.copytree(special, weights_dir / SPECIALISTS_DIR / "CT")
    monkeypatch.setenv("MEDIQA_WEIGHTS", str(weights_dir))
    code, routed = _scores(archive, tmp_path / "routed.csv")

    assert code == 0 and routed.keys() == main_alone.keys()
    ct = routed["CT_small.dcm"]
    assert ct["modality"] == "CT"
    assert float(ct["score"]) == pytest.approx(float(special_alone["CT_small.dcm"]["score"]),
                                               abs=0.02)
    assert float(ct["score"]) != pytest.approx(float(main_alone["CT_small.dcm"]["score"]),
                                               abs=0.02)
    for name, row in routed.items():
        assert row["model_version"].startswith("t0+CT-")
        if row["modality"] != "CT":  # the main network's score, context and severities
            assert float(row["score"]) == pytest.approx(float(main_alone[name]["score"]),
                                                        abs=0.02)
            assert row["phys_noise"] == main_alone[name]["phys_noise"]
    # the prompt columns stay the main network's: the route never changes what the report says
    assert ct["anatomy"] == main_alone["CT_small.dcm"]["anatomy"]
    assert dict(describe_installed_weights())["specialist CT"].startswith("s1, sha256 ")


@pytest.mark.parametrize("name", ["OTHER", "PET"])
def test_a_specialist_named_after_no_routable_modality_is_refused(
    weights_dir: Path, archive: Path, tmp_path: Path, name: str
):
    save_weights(_network(1), weights_dir / SPECIALISTS_DIR / name, version="s1")
    code, rows = _scores(archive, tmp_path / "r.csv")
    assert code == 6 and not rows


def test_a_specialist_of_another_config_is_refused(
    weights_dir: Path, archive: Path, tmp_path: Path
):
    other = ModelConfig.tiny()
    other = type(other).from_dict({**other.to_dict(), "keep_patches": other.keep_patches // 2})
    save_weights(_network(1, other), weights_dir / SPECIALISTS_DIR / "CT", version="s1")
    code, rows = _scores(archive, tmp_path / "r.csv")
    assert code == 6 and not rows


def test_a_tampered_specialist_is_refused(weights_dir: Path, archive: Path, tmp_path: Path):
    folder = save_weights(_network(1), weights_dir / SPECIALISTS_DIR / "CT", version="s1")
    blob = folder / "model.safetensors"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    code, rows = _scores(archive, tmp_path / "r.csv")
    assert code == 6 and not rows
