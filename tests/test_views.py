"""Mirror views for test-time averaging: the flips, and the merge of their outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mediqa_cli.model.packing import SliceOutput
from mediqa_cli.views import average_views, flip_views


def test_views_are_the_image_and_its_mirrors_in_a_fixed_order() -> None:
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    a, lr, ud, both = flip_views(image, 4)
    assert a is image
    assert np.array_equal(lr, image[:, ::-1]) and np.array_equal(ud, image[::-1])
    assert np.array_equal(both, image[::-1, ::-1]) and both.flags["C_CONTIGUOUS"]
    assert len(flip_views(image, 2)) == 2 and len(flip_views(image, 1)) == 1
    colour = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    assert np.array_equal(flip_views(colour, 2)[1], colour[:, ::-1, :])  # channels stay
    chw = torch.arange(24.0).reshape(3, 2, 4)
    assert torch.equal(flip_views(chw, 4, axes=(-2, -1))[2], torch.flip(chw, [-2]))
    with pytest.raises(ValueError, match="views"):
        flip_views(image, 3)


def _out(q: float, mod: int) -> SliceOutput:
    return SliceOutput(np.full(3, q / 100, np.float32), q, np.array([q, 0.0]), np.array([0.0]),
                       mod, 0)


def test_outputs_of_a_slices_views_are_averaged_slice_by_slice() -> None:
    outs = [_out(10, 1), _out(30, 2), _out(80, 0), _out(60, 0)]
    merged = average_views(outs, 2)
    assert [m.quality for m in merged] == [20.0, 70.0]
    assert np.allclose(merged[0].severities, 0.2) and np.allclose(merged[1].modality_logits,
                                                                  [70.0, 0.0])
    assert merged[0].modality_id == 1  # the unflipped view's prompt row
    assert average_views(outs, 1) == outs
    with pytest.raises(ValueError, match="whole number"):
        average_views(outs[:3], 2)
