"""benchmarks/token_reach.py: a measure's reach is its embedding's norm times its spread."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.weights import save_weights
from mediqa_cli.physics import N_PHYSICS
from tests.benchmark_scripts import load_benchmark


def test_spread_is_the_normal_iqr_and_reach_scales_each_measure_by_it(tmp_path: Path) -> None:
    bench = load_benchmark("token_reach")
    rng = np.random.default_rng(0)
    measures = np.column_stack([rng.normal(0.0, 2.0, 4000), np.full(4000, np.nan),
                                rng.normal(5.0, 0.1, 4000)])
    spread = bench.robust_spread(measures)
    assert spread[0] == pytest.approx(2.0, abs=0.1) and np.isnan(spread[1])
    assert spread[2] == pytest.approx(0.1, abs=0.01)

    torch.manual_seed(0)
    net = MedIQANet(dataclasses.replace(ModelConfig.tiny(), physics_tokens=True))
    with torch.no_grad():
        net.slice_physics.weight.zero_()
        net.slice_physics.weight[0, 0] = 3.0  # |w_0| = 3, every other measure unread
        net.slice_physics.weight[1, :2] = torch.tensor([3.0, 4.0])  # |w_1| = 5
    save_weights(net, tmp_path / "w", name="t", version="0")
    got = bench.reach(tmp_path / "w", np.full(N_PHYSICS, 0.5))
    np.testing.assert_allclose(got[:3], [1.5, 2.5, 0.0])
