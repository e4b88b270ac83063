"""The attention launcher's block-config ladder, with a stand-in kernel (no GPU, no interpreter).

A GPU with less shared memory than an H100 (consumer Ampere/Ada: ~100 KB per block) cannot hold
the fastest config's pipelined tiles; the launch must fall to a smaller config, not fail.
"""

from __future__ import annotations

import types

import pytest
import torch
from mediqa_kernels import triton_varlen_attention as tva
from triton.runtime.errors import OutOfResources


class ShrinkingGpu:
    """A kernel whose launches run out of shared memory above max_block rows."""

    def __init__(self, max_block: int) -> None:
        self.fn = types.SimpleNamespace(__name__=f"fits_{max_block}")
        self.max_block = max_block
        self.launches: list[tuple[tuple[int, ...], int, int, int]] = []

    def __getitem__(self, grid: tuple[int, ...]):  # noqa: ANN204 - mimics triton's launcher
        def launch(*_args: object, BLOCK_M: int, BLOCK_N: int, num_stages: int,
                   **_constants: object) -> None:
            self.launches.append((grid, BLOCK_M, BLOCK_N, num_stages))
            if max(BLOCK_M, BLOCK_N) > self.max_block:
                raise OutOfResources(BLOCK_M * 1024, self.max_block * 1024, "shared memory")

        return launch


@pytest.fixture(autouse=True)
def _compiled_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tva, "interpreting", lambda: False)
    monkeypatch.setattr(tva, "_WORKING_CONFIG", {})


def _launch(kernel: ShrinkingGpu, q: torch.Tensor) -> None:
    tva._launch(kernel, lambda block_m, block_n: (300 // block_m + 1, 2, 3), (), q, UPCAST=False)


def test_the_fastest_config_is_used_when_it_fits() -> None:
    kernel = ShrinkingGpu(max_block=1024)
    _launch(kernel, torch.zeros(4, 3, 32, dtype=torch.float16))
    assert [launch[1:] for launch in kernel.launches] == [(128, 64, 3)]


def test_a_small_gpu_falls_down_the_ladder_and_remembers_where_it_landed() -> None:
    kernel = ShrinkingGpu(max_block=32)
    q = torch.zeros(4, 3, 64, dtype=torch.float16)
    _launch(kernel, q)
    grid, block_m, block_n, _ = kernel.launches[-1]
    assert (block_m, block_n) == (32, 32) and grid == (300 // 32 + 1, 2, 3)
    assert len(kernel.launches) == 3  # 128x64, 64x32 ran out; 32x32 fit
    _launch(kernel, q)
    assert len(kernel.launches) == 4 and kernel.launches[-1][1:3] == (32, 32)


def test_fp32_and_wide_heads_start_with_smaller_tiles() -> None:
    fp16 = tva._block_ladder(128, 2)[0]
    fp32 = tva._block_ladder(128, 4)[0]
    assert fp32[0] * fp32[1] < fp16[0] * fp16[1]
    assert tva._block_ladder(64, 4)[0][0] < tva._block_ladder(64, 2)[0][0]


def test_out_of_resources_on_every_config_is_raised() -> None:
    with pytest.raises(OutOfResources):
        _launch(ShrinkingGpu(max_block=8), torch.zeros(4, 3, 32))


def test_the_ladder_never_tries_one_config_twice() -> None:
    for head_dim in (32, 64, 128):
        for itemsize in (2, 4):
            ladder = tva._block_ladder(head_dim, itemsize)
            assert len(set(ladder)) == len(ladder) and ladder[-1] == (16, 16, 4, 1)
