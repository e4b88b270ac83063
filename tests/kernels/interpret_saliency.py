"""Triton fused saliency top-k in the interpreter against the twin (run by
test_kernels_triton_interpreter.py; needs TRITON_INTERPRET=1, so it runs in its own process)."""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 (run via test_kernels_triton_interpreter.py)",
                allow_module_level=True)  # fmt: skip

import mediqa_kernels
from mediqa_kernels import triton_saliency as tsal
from mediqa_kernels.saliency import segmented_topk_reference

from tests.kernels.cases import LENGTH_CASES, cu_from_lengths, saliency_batch


def _run(images: torch.Tensor, cu: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return tsal.saliency_topk(images, cu, k, cu.tolist())


@pytest.mark.parametrize("case", sorted(LENGTH_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_saliency_scores_and_ranking_match_twin(case: str, dtype: torch.dtype) -> None:
    images, cu = saliency_batch(LENGTH_CASES[case], channels=2, dtype=dtype)
    scores, top = _run(images, cu, 4)
    ref_scores, _ = mediqa_kernels.saliency_topk_reference(images, cu, 4)
    torch.testing.assert_close(scores, ref_scores, atol=1e-5, rtol=1e-4)
    # Ranking is checked on the kernel's own scores: fp rounding may reorder near-ties.
    assert torch.equal(top, segmented_topk_reference(scores, cu.tolist(), 4))


def test_triton_saliency_ties_go_to_the_lower_index() -> None:
    images = torch.zeros(6, 1, 4, 4)
    images[1, 0, ::2] = 1.0
    images[4] = images[1]
    images[3] = images[1]
    _, top = _run(images, cu_from_lengths([6]), 6)
    assert top.tolist() == [[1, 3, 4, 0, 2, 5]]


def test_triton_saliency_ranks_nan_last() -> None:
    images, cu = saliency_batch([5])
    images[0, 0, 2, 2] = float("nan")
    scores, top = _run(images, cu, 5)
    assert torch.isnan(scores[0]) and top[0, -1] == 0


def test_triton_saliency_tiles_large_strided_images() -> None:
    # 70 x 150 pixels spans several row and column tiles; the transpose makes W the slow axis.
    images = torch.randn(4, 1, 150, 70, generator=torch.Generator().manual_seed(4))
    images = images.transpose(2, 3) * torch.tensor([0.5, 2.0, 1.0, 1.5]).view(4, 1, 1, 1)
    cu = cu_from_lengths([4])
    scores, top = _run(images, cu, 2)
    ref_scores, ref_top = mediqa_kernels.saliency_topk_reference(images, cu, 2)
    torch.testing.assert_close(scores, ref_scores, atol=1e-5, rtol=1e-4)
    assert torch.equal(top, ref_top)


def test_triton_saliency_segment_longer_than_one_rank_block() -> None:
    images, cu = saliency_batch([3, 150, 0, 2], height=4, width=4)
    scores, top = _run(images, cu, 7)
    assert torch.equal(top, segmented_topk_reference(scores, cu.tolist(), 7))


def test_op_routes_to_triton_and_opcheck_passes() -> None:
    images, cu = saliency_batch([3, 0, 4])
    got = mediqa_kernels.saliency_topk(images, cu, 2)
    assert torch.equal(got[1], _run(images, cu, 2)[1])
    torch.library.opcheck(torch.ops.mediqa.saliency_topk.default, (images, cu, 2))
