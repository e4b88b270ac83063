"""The CPU implementation of mediqa::saliency_topk against the per-segment reference."""

from __future__ import annotations

import mediqa_kernels
import pytest
import torch
from mediqa_kernels.saliency import (
    _segmented_topk_twin,
    saliency_scores_reference,
    segmented_topk_reference,
)

from tests.kernels.cases import LENGTH_CASES, cu_from_lengths, saliency_batch


@pytest.mark.parametrize("case", sorted(LENGTH_CASES))
@pytest.mark.parametrize("k", [1, 3, 8])
def test_cpu_op_matches_reference_scores_and_ranking(case: str, k: int) -> None:
    images, cu = saliency_batch(LENGTH_CASES[case], channels=2)
    scores, top = mediqa_kernels.saliency_topk(images, cu, k)
    ref_scores, ref_top = mediqa_kernels.saliency_topk_reference(images, cu, k)
    assert scores.dtype == torch.float32 and top.dtype == torch.int64
    assert top.shape == (len(LENGTH_CASES[case]), k)
    torch.testing.assert_close(scores, ref_scores, atol=0, rtol=0)
    assert torch.equal(top, ref_top)


def test_ties_go_to_the_lower_index() -> None:
    images = torch.zeros(6, 1, 4, 4)
    images[1, 0, ::2] = 1.0
    images[4] = images[1]  # same score as item 1
    images[3] = images[1]  # and item 3
    _, top = mediqa_kernels.saliency_topk(images, cu_from_lengths([6]), 6)
    assert top.tolist() == [[1, 3, 4, 0, 2, 5]]


def test_short_segments_pad_indices_with_minus_one() -> None:
    images, cu = saliency_batch([2, 0, 1])
    _, top = mediqa_kernels.saliency_topk(images, cu, 3)
    assert top[0, 2] == -1 and top[1].tolist() == [-1, -1, -1] and top[2].tolist()[1:] == [-1, -1]
    assert set(top[0, :2].tolist()) == {0, 1} and top[2, 0] == 2


def test_nan_scores_rank_last() -> None:
    images, cu = saliency_batch([4])
    images[0, 0, 0, 0] = float("nan")
    scores, top = mediqa_kernels.saliency_topk(images, cu, 4)
    assert torch.isnan(scores[0])
    assert top[0, -1] == 0


def test_flat_image_scores_zero_and_edges_score_higher_than_noise_free_ramp() -> None:
    flat = torch.full((1, 1, 8, 8), 0.3)
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    ramp = torch.linspace(0, 1, 8).expand(1, 1, 8, 8).clone()
    scores = saliency_scores_reference(torch.cat([flat, edge, ramp]))
    assert scores[0] == 0
    assert scores[1] > scores[2] > 0


def test_strided_images_score_like_contiguous_ones() -> None:
    images, cu = saliency_batch([3, 4], height=10, width=12)
    strided = images.transpose(2, 3).contiguous().transpose(2, 3)
    assert not strided.is_contiguous()
    got = mediqa_kernels.saliency_topk(strided, cu, 2)
    want = mediqa_kernels.saliency_topk(images, cu, 2)
    torch.testing.assert_close(got[0], want[0])
    assert torch.equal(got[1], want[1])


def test_vectorised_topk_matches_loop_on_many_segments_with_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 30, (200,), generator=gen).tolist()
    scores = torch.randint(0, 5, (sum(lengths),), generator=gen).float()  # heavy ties
    scores[::17] = -0.0
    cu = cu_from_lengths(lengths)
    assert torch.equal(
        _segmented_topk_twin(scores, cu.tolist(), 6),
        segmented_topk_reference(scores, cu.tolist(), 6),
    )


def test_empty_batch_gives_empty_scores_and_all_minus_one() -> None:
    scores, top = mediqa_kernels.saliency_topk(torch.zeros(0, 1, 4, 4), cu_from_lengths([0, 0]), 2)
    assert scores.shape == (0,) and top.tolist() == [[-1, -1], [-1, -1]]
