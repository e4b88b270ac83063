"""TorchScript and torch.export give the same outputs as eager on a tiny config."""

from __future__ import annotations

import pytest
import torch

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.export import export_model, script_model
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.packing import example_batch

CFG = ModelConfig.tiny()


@pytest.fixture(scope="module")
def model() -> MedIQANet:
    torch.manual_seed(0)
    return MedIQANet(CFG).eval()


def _assert_same(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_torchscript_matches_eager_on_batches_of_other_sizes(model: MedIQANet) -> None:
    scripted = script_model(model)
    for sizes in [(5, 9, 3), (1,), (12, 2, 7, 30)]:
        batch = example_batch(CFG, sizes, seed=len(sizes))
        with torch.inference_mode():
            _assert_same(scripted(*batch.args()), model(*batch.args()))


def test_torch_export_matches_eager_for_any_slice_and_patch_count(model: MedIQANet) -> None:
    bound = 16  # the exported max_seqlen: every later batch is packed with it
    program = export_model(model, max_seqlen=bound).module()
    for sizes in [(7, 16, 2, 11), (4,), (1,), (1, 1, 1)]:
        batch = example_batch(CFG, sizes, seed=len(sizes))
        batch.max_seqlen = bound
        with torch.inference_mode():
            _assert_same(program(*batch.args()), model(*batch.args()))
