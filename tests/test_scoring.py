"""The learned scorer in the engine: columns, batch invariance, backends, weight refusal.

A small randomly initialised network stands in for trained weights: these tests check the
mechanics (packing, aggregation, backends, checksums), not the quality of the score.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.precision import native_bf16
from mediqa_cli.model.weights import save_weights
from mediqa_cli.runner import ScoreRequest, run_score
from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

# What `--precision auto` adds to the version on this CPU (tests/test_precision.py pins both).
AUTO_TAG = "+bf16" if native_bf16() else ""


def _run(root: Path, out: Path, **kwargs) -> list[dict[str, str]]:
    code = run_score(ScoreRequest(paths=[str(root)], out=str(out), workers=0, quiet=True, **kwargs))
    rows = list(csv.DictReader(open(out))) if out.exists() else []
    return [dict(r, _code=str(code)) for r in rows]


def test_scores_and_physical_columns_are_filled(weights_dir: Path, archive: Path, tmp_path: Path):
    rows = _run(archive, tmp_path / "r.csv")
    assert len(rows) == 5 and all(r["_code"] == "0" for r in rows)
    for row in rows:
        assert 0 <= float(row["score"]) <= 100
        assert row["grade"] in "ABCD"
        for family in PHYSICAL_FAMILIES:
            assert 0 <= float(row[f"phys_{family}"]) <= 1
        assert row["worst_slice"] in row["salient_slices"].split(";")
        assert row["model_version"] == f"t0{AUTO_TAG}"
    png = next(r for r in rows if r["path"].endswith(".png"))
    assert png["modality_source"] == "predicted" and png["modality"]
    ct = next(r for r in rows if r["path"].endswith("CT_small.dcm"))
    assert (ct["modality"], ct["modality_source"]) == ("CT", "dicom-tag")


def test_packing_many_scans_matches_scoring_each_alone(
    weights_dir: Path, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    together = {r["scan_id"]: float(r["score"]) for r in _run(archive, tmp_path / "a.csv")}
    import mediqa_cli.engine as engine

    monkeypatch.setattr(engine.EngineOptions, "batch_scans", 1)
    alone = {r["scan_id"]: float(r["score"]) for r in _run(archive, tmp_path / "b.csv")}
    assert together.keys() == alone.keys()
    for key in together:
        assert together[key] == pytest.approx(alone[key], abs=0.02)


@pytest.mark.parametrize("backend", ["torchscript", "export", "compile"])
def test_backends_agree_with_eager(weights_dir: Path, archive: Path, tmp_path: Path, backend: str):
    # Eager in fp32: the other backends keep fp32, and `auto` would run eager's blocks in bf16
    # on a CPU with native bf16 (that difference is tests/test_precision.py's).
    eager = {r["scan_id"]: float(r["score"])
             for r in _run(archive, tmp_path / "e.csv", precision="fp32")}
    other = _run(archive, tmp_path / f"{backend}.csv", backend=backend)
    assert other and all(r["status"] == "ok" for r in other)
    for row in other:
        assert float(row["score"]) == pytest.approx(eager[row["scan_id"]], abs=0.05)


def test_tampered_weights_are_refused_with_exit_6(weights_dir: Path, archive: Path, tmp_path: Path):
    blob = weights_dir / "model.safetensors"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    code = run_score(ScoreRequest(paths=[str(archive)], out=str(tmp_path / "r.csv"), quiet=True))
    assert code == 6
    assert not (tmp_path / "r.csv").exists()


def test_fail_under_exits_3_when_a_score_is_below(weights_dir: Path, archive: Path, tmp_path: Path):
    rows = _run(archive, tmp_path / "r.csv", fail_under=100.0)
    assert rows and rows[0]["_code"] == "3"
    rows = _run(archive, tmp_path / "r2.csv", fail_under=0.0)
    assert rows[0]["_code"] == "0"


def test_resume_rescores_rows_from_another_model_version(
    weights_dir: Path, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    out = tmp_path / "r.csv"
    first = _run(archive, out)
    assert {r["model_version"] for r in first} == {f"t0{AUTO_TAG}"}
    torch.manual_seed(5)
    newer = save_weights(MedIQANet(ModelConfig.tiny()).eval(), tmp_path / "w2", version="t1")
    monkeypatch.setenv("MEDIQA_WEIGHTS", str(newer))
    second = _run(archive, out, resume=True)
    assert {r["model_version"] for r in second} == {f"t1{AUTO_TAG}"}


def test_mirror_views_average_into_one_row_per_scan_and_name_themselves(
    weights_dir: Path, archive: Path, tmp_path: Path
):
    plain = {r["scan_id"]: r for r in _run(archive, tmp_path / "v1.csv")}
    mirrored = _run(archive, tmp_path / "v4.csv", views=4)
    assert len(mirrored) == len(plain) and all(r["status"] == "ok" for r in mirrored)
    moved = 0
    for row in mirrored:
        assert row["model_version"] == f"t0+views4{AUTO_TAG}"  # --resume never mixes the two
        assert 0 <= float(row["score"]) <= 100
        assert row["salient_slices"] == plain[row["scan_id"]]["salient_slices"]
        moved += abs(float(row["score"]) - float(plain[row["scan_id"]]["score"])) > 1e-3
    assert moved  # a random network is not mirror-invariant: the views were really scored


def test_views_outside_1_2_4_are_refused(tmp_path: Path):
    from typer.testing import CliRunner

    from mediqa_cli.cli import app

    result = CliRunner().invoke(app, ["score", str(tmp_path), "--out", str(tmp_path / "r.csv"),
                                      "--views", "3"])
    assert result.exit_code != 0 and "--views" in result.output


def test_an_untagged_image_unlike_the_corpus_is_other_and_tagged_scans_keep_theirs(
        archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import numpy as np

    from mediqa_cli.domain import DomainCheck
    from mediqa_cli.physics import N_PHYSICS

    torch.manual_seed(0)
    config = ModelConfig.from_dict({**ModelConfig.tiny().to_dict(), "physics_tokens": True})
    out = save_weights(MedIQANet(config).eval(), tmp_path / "weights", name="t", version="t1")
    far = DomainCheck(np.zeros(N_PHYSICS), np.ones(N_PHYSICS), np.full((2, 2 * N_PHYSICS), 50.0),
                      k=1, threshold=1.0)  # every real slice lies far from this one point
    far.save(out)
    monkeypatch.setenv("MEDIQA_WEIGHTS", str(out))
    rows = _run(archive, tmp_path / "r.csv")
    png = next(r for r in rows if r["path"].endswith(".png"))
    assert png["modality"] == "OTHER" and "out of domain" in png["notes"]
    assert float(png["domain_distance"]) > 1
    ct = next(r for r in rows if r["path"].endswith("CT_small.dcm"))
    assert ct["modality"] == "CT" and float(ct["domain_distance"]) > 1
    assert "out of domain" not in ct["notes"]


def test_a_calibration_next_to_the_weights_rescales_scores_without_reordering_them(
        weights_dir: Path, archive: Path, tmp_path: Path):
    from mediqa_cli.calibration import POOLED, Calibration, ScaleMap

    raw = {r["scan_id"]: r for r in _run(archive, tmp_path / "raw.csv")}
    Calibration({POOLED: ScaleMap((6.0, 5.0, 4.0))}, "test").save(weights_dir)  # harsh cuts
    cal = {r["scan_id"]: r for r in _run(archive, tmp_path / "cal.csv")}
    scored = [k for k, r in raw.items() if r["score"]]
    assert scored and all(float(cal[k]["score"]) < float(raw[k]["score"]) for k in scored)
    order = sorted(scored, key=lambda k: float(raw[k]["score"]))
    assert order == sorted(scored, key=lambda k: float(cal[k]["score"]))
    from mediqa_cli.taxonomy import grade_for

    assert all(cal[k]["grade"] == grade_for(float(cal[k]["score"])) for k in scored)
    versions = {r["model_version"] for r in cal.values() if r["score"]}
    assert len(versions) == 1 and versions.pop().startswith(f"t0{AUTO_TAG}+cal-")  # never mixed
