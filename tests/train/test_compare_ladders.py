"""benchmarks/compare_ladders.py: paired within-ladder SRCC differences between two runs."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    return load_benchmark("compare_ladders")


def _row(modality: str, source: str, scores: list[float], mean_of: list[float]) -> dict:
    return {"modality": modality, "family": "noise", "simulator": "x", "source": source,
            "shape": [8, 8], "scores": scores, "others": {"b + model (mean)": mean_of}}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = [100, 90, 80, 70, 60, 50]  # falls with severity: SRCC 1
BAD = [50, 60, 70, 80, 90, 100]  # rises: SRCC -1


def test_paired_difference_per_group_and_column_choice(
        compare: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_row("CT", "s1", BAD, GOOD), _row("CT", "s2", GOOD, GOOD), _row("MR", "s3", BAD, BAD)]
    a = _write(tmp_path / "a.jsonl", rows)
    assert compare.main([str(a), f"{a}:b + model (mean)", "--n-boot", "200"]) == 0
    table = capsys.readouterr().out
    assert "| CT | 2 | 0.000 | 1.000 | +1.000 | [+0.000, +2.000] |" in table
    assert "| MR | 1 | -1.000 | -1.000 | +0.000 | [+0.000, +0.000] |" in table
    assert "| all | 3 | -0.333 | 0.333 | +0.667 |" in table


def test_files_with_different_ladders_are_refused(compare: ModuleType, tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [_row("CT", "s1", GOOD, GOOD)])
    b = _write(tmp_path / "b.jsonl", [_row("CT", "other", GOOD, GOOD)])
    assert compare.main([str(a), str(b)]) == 2


def test_several_candidates_are_scored_as_the_mean_of_their_scores(
        compare: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Alone each candidate ranks the ladder backwards at one step; their mean ranks it right.
    left = [100, 90, 70, 80, 60, 50]
    right = [100, 80, 90, 60, 70, 50]
    a = _write(tmp_path / "a.jsonl", [_row("CT", "s1", BAD, GOOD)])
    b1 = _write(tmp_path / "b1.jsonl", [_row("CT", "s1", left, GOOD)])
    b2 = _write(tmp_path / "b2.jsonl", [_row("CT", "s1", right, GOOD)])
    assert compare.main([str(a), str(b1), "--n-boot", "50"]) == 0
    assert "| CT | 1 | -1.000 | 0.943 | +1.943 |" in capsys.readouterr().out
    assert compare.main([str(a), str(b1), str(b2), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "(mean of 2)" in out and "| CT | 1 | -1.000 | 1.000 | +2.000 |" in out
    other = _write(tmp_path / "c.jsonl", [_row("CT", "elsewhere", GOOD, GOOD)])
    assert compare.main([str(a), str(b1), str(other)]) == 2


def test_per_network_averages_srcc_and_ladder_sets_pool(
        compare: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    left = [100, 90, 70, 80, 60, 50]  # one swap: SRCC 0.943 alone
    right = [100, 80, 90, 60, 70, 50]  # two swaps: 0.886; the mean of the two ranks perfectly
    a = _write(tmp_path / "a.jsonl", [_row("CT", "s1", BAD, GOOD)])
    b1 = _write(tmp_path / "b1.jsonl", [_row("CT", "s1", left, GOOD)])
    b2 = _write(tmp_path / "b2.jsonl", [_row("CT", "s1", right, GOOD)])
    assert compare.main([str(a), "--vs", str(b1), str(b2), "--n-boot", "50"]) == 0
    assert "| CT | 1 | -1.000 | 1.000 | +2.000 |" in capsys.readouterr().out  # the ensemble
    assert compare.main([str(a), "--vs", str(b1), str(b2), "--per-network", "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "mean SRCC of 2" in out and "| CT | 1 | -1.000 | 0.914 | +1.914 |" in out
    # A second draw's ladders (another source) pool with the first on both sides.
    a2 = _write(tmp_path / "a2.jsonl", [_row("MR", "s9", GOOD, GOOD)])
    b3 = _write(tmp_path / "b3.jsonl", [_row("MR", "s9", BAD, GOOD)])
    assert compare.main([str(a), str(a2), "--vs", str(b1), str(b3), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "| all | 2 | 0.000 | -0.029 |" in out and "over 2 ladder sets" in out
    assert "mean over modalities: A 0.000, B -0.029" in out
    # A side that lacks one of the other's ladder sets is refused.
    assert compare.main([str(a), str(a2), "--vs", str(b1)]) == 2
