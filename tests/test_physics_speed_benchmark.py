"""benchmarks/physics_speed.py: a tree beside itself gives the same bits on every input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark


def test_the_same_tree_as_baseline_reads_the_same_bits(capsys: pytest.CaptureFixture[str]):
    root = Path(__file__).resolve().parents[1]
    load_benchmark("physics_speed").main(["--baseline", str(root), "--rounds", "1"])
    rows = capsys.readouterr().out.splitlines()[2:-1]
    assert len(rows) == 8
    assert all(row.endswith("yes") for row in rows)
