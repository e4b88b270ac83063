"""The physics-token reader beside the network: its term, its file, and its place in the scorer."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.physics import N_PHYSICS, PHYSICS_FEATURES
from mediqa_cli.physics_head import PHYSICS_HEAD_FILE, PhysicsHead, TokenReader
from mediqa_cli.runner import ScoreRequest, run_score
from mediqa_cli.taxonomy import MODALITIES


def _reader(weight_on: str = "noise", weight: float = 1.0, offset: float = 0.0) -> TokenReader:
    weights = np.zeros(N_PHYSICS)
    weights[PHYSICS_FEATURES.index(weight_on)] = weight
    return TokenReader(np.zeros(N_PHYSICS), np.full(N_PHYSICS, 2.0), weights, offset)


def test_the_term_lowers_a_slice_whose_token_rises_and_leaves_others_alone():
    head = PhysicsHead({"MR": _reader("noise", 1.0)})
    quiet, noisy = np.zeros(N_PHYSICS), np.zeros(N_PHYSICS)
    noisy[PHYSICS_FEATURES.index("noise")] = 4.0  # z = 2: the term is -2 in logit units
    out = head.apply(np.array([90.0, 90.0]), [quiet, noisy], "MR")
    assert out[0] == pytest.approx(90.0)
    assert out[1] == pytest.approx(100.0 / (1.0 + math.exp(-(math.log(9.0) - 2.0))))
    # no reader for the modality, no measures, or a missing token: the network's score stands
    np.testing.assert_allclose(head.apply(np.array([90.0]), [noisy], "CT"), [90.0])
    np.testing.assert_allclose(head.apply(np.array([90.0]), [None], "MR"), [90.0])
    missing = noisy.copy()
    missing[PHYSICS_FEATURES.index("noise")] = np.nan
    np.testing.assert_allclose(head.apply(np.array([90.0]), [missing], "MR"), [90.0])


def test_the_file_round_trips_and_a_bad_one_is_refused(tmp_path: Path):
    head = PhysicsHead({"MR": _reader("bias", -0.7, offset=0.25)}, fitted_on="test")
    head.save(tmp_path)
    loaded = PhysicsHead.load(tmp_path)
    assert loaded is not None and loaded.fitted_on == "test" and len(loaded.digest) == 8
    tokens = np.random.default_rng(0).normal(size=(5, N_PHYSICS))
    np.testing.assert_allclose(loaded.readers["MR"].term(tokens), head.readers["MR"].term(tokens))
    assert PhysicsHead.load(tmp_path / "absent") is None
    text = (tmp_path / PHYSICS_HEAD_FILE).read_text().replace('"bias"', '"no_such_measure"')
    (tmp_path / PHYSICS_HEAD_FILE).write_text(text)
    with pytest.raises(ValueError, match="unknown physics measures"):
        PhysicsHead.load(tmp_path)


def test_a_reader_next_to_the_weights_moves_the_score_by_its_term_and_names_itself(
        weights_dir: Path, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A constant term (offset only) must shift every scored scan's slices by exactly that much
    in logit units, whatever the modality, and the version must say a reader was used."""
    import torch

    from mediqa_cli.model.network import MedIQANet
    from mediqa_cli.model.weights import save_weights

    torch.manual_seed(0)
    config = dataclasses.replace(ModelConfig.tiny(), physics_tokens=True)
    folder = save_weights(MedIQANet(config).eval(), weights_dir.parent / "phys", name="t",
                          version="t1")
    monkeypatch.setenv("MEDIQA_WEIGHTS", str(folder))

    def scores(out: Path) -> dict[str, dict[str, str]]:
        code = run_score(ScoreRequest(paths=[str(archive)], out=str(out), workers=0, quiet=True,
                                      precision="fp32"))
        assert code in (0, 3)
        return {r["scan_id"]: r for r in csv.DictReader(open(out))}

    raw = scores(tmp_path / "raw.csv")
    zero = np.zeros(N_PHYSICS)
    PhysicsHead({m: TokenReader(zero, np.ones(N_PHYSICS), zero, offset=1.5)
                 for m in MODALITIES}).save(folder)
    shifted = scores(tmp_path / "ph.csv")
    scored = [k for k, r in raw.items() if r["score"]]
    assert scored
    for key in scored:
        p = float(raw[key]["score"]) / 100.0
        expected = 100.0 / (1.0 + math.exp(-(math.log(p / (1 - p)) - 1.5)))
        assert float(shifted[key]["score"]) == pytest.approx(expected, abs=0.02)  # 2-dp rows
        assert "+ph-" in shifted[key]["model_version"]
        assert "+ph-" not in raw[key]["model_version"]


def test_ray_actors_receive_the_reader_with_the_weights(weights_dir: Path):
    """Actors load the weights from the driver's payload: without the reader their scores would
    be the network's alone and disagree with a local run."""
    from mediqa_cli.distributed import _weights_payload

    PhysicsHead({"MR": _reader()}).save(weights_dir)
    payload = _weights_payload()
    assert payload is not None
    assert payload[PHYSICS_HEAD_FILE] == (weights_dir / PHYSICS_HEAD_FILE).read_bytes()


def test_info_names_the_modalities_with_a_reader(weights_dir: Path):
    from mediqa_cli.scoring import describe_installed_weights

    assert "physics reader" not in dict(describe_installed_weights())
    PhysicsHead({"XR": _reader(), "MR": _reader()}).save(weights_dir)
    assert dict(describe_installed_weights())["physics reader"].startswith("MR, XR (")


def test_reader_terms_prints_the_shift_of_each_scan_with_a_reader(
        weights_dir: Path, archive: Path, capsys: pytest.CaptureFixture[str]):
    from tests.benchmark_scripts import load_benchmark

    zero = np.zeros(N_PHYSICS)
    PhysicsHead({"MR": TokenReader(zero, np.ones(N_PHYSICS), zero, offset=1.5)}).save(weights_dir)
    load_benchmark("reader_terms").main([str(archive), "--weights", str(weights_dir)])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows and all(row[:3] == ["MR", "-1.50", "-"] for row in rows)  # CT, US: no reader
    from mediqa_cli.physics_head import ExposureFloor

    PhysicsHead({}, floors={"MR": ExposureFloor(1e6, 1.0)}).save(weights_dir)  # all below it
    load_benchmark("reader_terms").main([str(archive), "--weights", str(weights_dir)])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows and all(row[:2] == ["MR", "-"] for row in rows)
    shifts = [float(row[2]) for row in rows]  # 0 where a float volume has no display mean
    assert any(v < -5 for v in shifts) and all(v < -5 or v == 0 for v in shifts)


def test_a_site_reader_weighs_the_network_logit_and_round_trips(tmp_path: Path):
    """network_weight g: the scored logit is g * logit + term; a file without it reads as 1,
    and a reader with g = 1 writes no such key (the shipped files' digests stay)."""
    zero = np.zeros(N_PHYSICS)
    site = PhysicsHead({"US": dataclasses.replace(_reader("noise", 0.0, offset=-0.5),
                                                  network_weight=0.25)})
    out = site.apply(np.array([90.0]), [zero], "US")
    assert out[0] == pytest.approx(100.0 / (1.0 + math.exp(-(0.25 * math.log(9.0) + 0.5))))
    site.save(tmp_path)
    loaded = PhysicsHead.load(tmp_path)
    assert loaded is not None and loaded.readers["US"].network_weight == pytest.approx(0.25)
    assert "network_weight" not in _reader().to_dict()
    plain = tmp_path / "plain"
    plain.mkdir()
    PhysicsHead({"MR": _reader()}).save(plain)
    assert PhysicsHead.load(plain).readers["MR"].network_weight == 1.0
    text = (tmp_path / PHYSICS_HEAD_FILE).read_text().replace('"network_weight": 0.25',
                                                               '"network_weight": NaN')
    (tmp_path / PHYSICS_HEAD_FILE).write_text(text)
    with pytest.raises(ValueError, match="network weight"):
        PhysicsHead.load(tmp_path)


def test_an_exposure_floor_prices_each_stop_below_its_bound_and_nothing_above():
    from mediqa_cli.physics_head import ExposureFloor

    floor = ExposureFloor(bound=0.1, per_stop=2.0)
    level = np.array([0.4, 0.1, 0.05, 0.025, 0.0, np.nan])
    np.testing.assert_allclose(floor.term(level), [0.0, 0.0, -2.0, -4.0, -2.0 * math.log2(
        0.1 * 2 ** 12), 0.0])
    head = PhysicsHead({}, floors={"FUNDUS": floor})  # a floor without a reader applies alone
    bright, dark = np.zeros(N_PHYSICS), np.zeros(N_PHYSICS)
    bright[PHYSICS_FEATURES.index("display_mean")] = 0.3
    dark[PHYSICS_FEATURES.index("display_mean")] = 0.025
    out = head.apply(np.array([90.0, 90.0]), [bright, dark], "FUNDUS")
    assert out[0] == pytest.approx(90.0)
    assert out[1] == pytest.approx(100.0 / (1.0 + math.exp(-(math.log(9.0) - 4.0))))
    np.testing.assert_allclose(head.apply(np.array([90.0]), [dark], "NM"), [90.0])


def test_floors_add_to_a_reader_and_round_trip_while_files_without_them_keep_their_digest(
        tmp_path: Path):
    from mediqa_cli.physics_head import ExposureFloor

    plain = PhysicsHead({"FUNDUS": _reader("noise", 1.0)})
    plain.save(tmp_path)
    assert "floors" not in (tmp_path / PHYSICS_HEAD_FILE).read_text()
    before = PhysicsHead.load(tmp_path).digest
    floored = dataclasses.replace(plain, floors={"FUNDUS": ExposureFloor(0.1, 2.0)})
    tokens = np.zeros(N_PHYSICS)
    tokens[PHYSICS_FEATURES.index("noise")] = 2.0  # z = 1: the reader's term is -1
    tokens[PHYSICS_FEATURES.index("display_mean")] = 0.05  # one stop below: -2 more
    out = floored.apply(np.array([90.0]), [tokens], "FUNDUS")
    assert out[0] == pytest.approx(100.0 / (1.0 + math.exp(-(math.log(9.0) - 3.0))))
    floored.save(tmp_path)
    loaded = PhysicsHead.load(tmp_path)
    assert loaded.floors == {"FUNDUS": ExposureFloor(0.1, 2.0)} and loaded.digest != before
    text = (tmp_path / PHYSICS_HEAD_FILE).read_text().replace('"bound": 0.1', '"bound": -0.1')
    (tmp_path / PHYSICS_HEAD_FILE).write_text(text)
    with pytest.raises(ValueError, match="exposure floor"):
        PhysicsHead.load(tmp_path)
