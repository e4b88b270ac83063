"""benchmarks/ladder_steps.py: where along a ladder a scorer loses the order."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """ladder_steps.py imports compare_ladders.py as its sibling, as when run as a script."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return load_benchmark("ladder_steps")


def _row(modality: str, scores: list[float], physics: list[float] | None = None) -> dict:
    return {"modality": modality, "family": "noise", "scores": scores,
            "physics": physics or [100, 90, 80, 70, 60, 50], "others": {"b": scores[::-1]}}


def test_share_of_ladders_falling_at_each_step_per_modality(steps: ModuleType) -> None:
    rows = [_row("CT", [100, 90, 80, 70, 60, 65]),  # breaks only at the top step
            _row("MR", [100, 101, 80, 70, 60, 50])]  # breaks only at the first step
    table = steps.step_concordance(rows, "model")
    assert np.allclose(table["CT"], [1, 1, 1, 1, 0])
    assert np.allclose(table["MR"], [0, 1, 1, 1, 1])
    assert np.allclose(table["all"], [0.5, 1, 1, 1, 0.5])
    assert np.allclose(steps.step_concordance(rows, "physics")["all"], 1.0)
    assert np.allclose(steps.step_concordance(rows, "b")["CT"], [1, 0, 0, 0, 0])


def test_share_of_physics_steps_under_the_ranking_margin(steps: ModuleType) -> None:
    rows = [_row("MR", [0] * 6, [100, 99.5, 99, 98.5, 90, 80]), _row("CT", [0] * 6)]
    assert steps.small_steps(rows, 2.0) == {"CT/noise": 0.0, "MR/noise": 0.6}
