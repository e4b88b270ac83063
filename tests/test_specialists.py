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


def _same_score(a: dict[str, str], b: dict[str, str]) -> bool:
    return float(a["score"]) == pytest.approx(float(b["score"]), abs=0.02)


def test_a_named_modality_goes_to_its_specialist_alone_and_the_rest_to_the_main_network(
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
    ct = routed["CT_small.dcm"]  # CT from its DICOM tag: the specialist's row, context included
    assert (ct["modality"], ct["modality_source"]) == ("CT", "dicom-tag")
    assert _same_score(ct, special_alone["CT_small.dcm"])
    assert not _same_score(ct, main_alone["CT_small.dcm"])
    for column in ("anatomy", "phys_noise"):
        assert ct[column] == special_alone["CT_small.dcm"][column]
    for name, row in routed.items():
        assert row["model_version"].startswith("t0+CT-")
        if row["modality"] != "CT":  # the main network's score, context and severities
            assert _same_score(row, main_alone[name])
            assert row["phys_noise"] == main_alone[name]["phys_noise"]
    assert dict(describe_installed_weights())["specialist CT"].startswith("s1, sha256 ")


def test_a_guessed_modality_is_routed_after_the_main_networks_guess(
    weights_dir: Path, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _, main_alone = _scores(archive, tmp_path / "main.csv")
    png = main_alone["img0001.png"]  # nothing names its modality: the main network guesses
    assert png["modality_source"] == "predicted" and png["modality"] != "OTHER"
    special = save_weights(_network(1), tmp_path / "as_main", version="s1")
    monkeypatch.setenv("MEDIQA_WEIGHTS", str(special))
    _, special_alone = _scores(archive, tmp_path / "special.csv")

    shutil.copytree(special, weights_dir / SPECIALISTS_DIR / png["modality"])
    monkeypatch.setenv("MEDIQA_WEIGHTS", str(weights_dir))
    _, routed = _scores(archive, tmp_path / "routed.csv")

    row = routed["img0001.png"]
    # the specialist's quality (it conditions on its own guess, as when it scores alone) ...
    assert _same_score(row, special_alone["img0001.png"])
    assert not _same_score(row, png)
    # ... under the main network's prompt columns, which picked the route
    for column in ("modality", "modality_source", "anatomy"):
        assert row[column] == png[column]


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


def test_ray_actors_receive_the_specialists_with_the_weights(weights_dir: Path, tmp_path: Path):
    """Actors rebuild the folder from the driver's payload: without the specialist their
    histology scores would be the main network's and disagree with a local run."""
    from mediqa_cli.distributed import _weights_payload, write_payload
    from mediqa_cli.scoring import load_scorer

    save_weights(_network(1), weights_dir / SPECIALISTS_DIR / "HISTO", version="s1")
    payload = _weights_payload()
    assert payload is not None
    write_payload(payload, tmp_path / "actor")
    local = load_scorer(weights_dir, "cpu", precision="fp32")
    actor = load_scorer(tmp_path / "actor", "cpu", precision="fp32")
    assert actor.version == local.version and "+HISTO-" in actor.version
    assert actor.specialists.keys() == {"HISTO"}


def test_one_network_serving_two_modalities_is_loaded_once(weights_dir: Path):
    from mediqa_cli.scoring import load_scorer

    folder = save_weights(_network(1), weights_dir / SPECIALISTS_DIR / "CT", version="s1")
    shutil.copytree(folder, weights_dir / SPECIALISTS_DIR / "XR")
    scorer = load_scorer(weights_dir, "cpu", precision="fp32")
    assert scorer.specialists["CT"] is scorer.specialists["XR"]
    assert "+CT-" in scorer.version and "+XR-" in scorer.version
