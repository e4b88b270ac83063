"""Salient-slice and salient-patch selection on a real volume and on synthetic patches."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest

from mediqa_cli.preprocess import PATCH, SliceTokens, patchify
from mediqa_cli.saliency import (
    select_patches,
    select_slices,
    select_slices_batch,
    thumbnail,
)

ANATOMICAL = Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii"


@pytest.fixture(scope="module")
def head_slices() -> list[np.ndarray]:
    """A real T1 head volume (nibabel's test data) as 25 axial slices of 33 x 41."""
    vol = np.asarray(nibabel.load(ANATOMICAL).dataobj, dtype=np.float32)
    return [vol[:, :, z] for z in range(vol.shape[2])]


def _pad(slices: list[np.ndarray], n: int, noise: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = slices[0].shape
    empty = [np.abs(rng.normal(0.0, noise, shape)).astype(np.float32) for _ in range(2 * n)]
    return empty[:n] + slices + empty[n:]


@pytest.mark.parametrize("noise", [0.0, 2.0, 200.0])  # 200: ~2% of the head's bright range
def test_salient_slices_are_the_anatomy_not_the_empty_padding(
    head_slices: list[np.ndarray], noise: float
) -> None:
    padded = _pad(head_slices, 12, noise)
    sel = select_slices([thumbnail(s) for s in padded], "MR", k=8)
    anatomy = range(12, 12 + len(head_slices))
    assert len(sel.indices) == 8
    assert all(int(i) in anatomy for i in sel.indices), sel.indices
    assert sel.scores.shape == (len(padded),)
    assert sel.scores[:12].max() < sel.scores[sel.indices].min()


def test_selection_is_in_volume_order_with_weights_summing_to_one(
    head_slices: list[np.ndarray],
) -> None:
    sel = select_slices([thumbnail(s) for s in head_slices], "MR", k=5)
    assert sel.indices.dtype == np.int64 and np.all(np.diff(sel.indices) > 0)
    assert sel.weights.dtype == np.float32 and sel.weights.sum() == pytest.approx(1.0, abs=1e-6)
    # The weights follow saliency: the most salient chosen slice weighs most.
    assert int(np.argmax(sel.weights)) == int(np.argmax(sel.scores[sel.indices]))
    assert sel.value_range is not None and sel.value_range[1] > sel.value_range[0]


def test_short_volumes_and_2d_images_keep_every_slice(head_slices: list[np.ndarray]) -> None:
    sel = select_slices([thumbnail(s) for s in head_slices[:3]], "MR", k=8)
    assert sel.indices.tolist() == [0, 1, 2]
    photo = np.random.default_rng(0).random((50, 70, 3)).astype(np.float32) * 255
    one = select_slices([thumbnail(photo)], "FUNDUS", k=8)
    assert one.indices.tolist() == [0] and one.weights.tolist() == [1.0]
    assert one.value_range is None  # colour is not range-scaled


def test_blank_volume_gets_uniform_weights() -> None:
    sel = select_slices([np.zeros((64, 64), dtype=np.float32)] * 4, "CT", k=2)
    assert len(sel.indices) == 2 and np.allclose(sel.weights, 0.5)


def test_batched_selection_equals_one_volume_at_a_time(head_slices: list[np.ndarray]) -> None:
    vol_a = [thumbnail(s) for s in _pad(head_slices, 3, 1.0)]
    vol_b = [thumbnail(s * 3.0 - 1000.0) for s in head_slices[5:9]]
    both = select_slices_batch([(vol_a, "MR"), (vol_b, "CT")], k=4)
    for got, (thumbs, modality) in zip(both, [(vol_a, "MR"), (vol_b, "CT")]):
        alone = select_slices(thumbs, modality, k=4)
        np.testing.assert_array_equal(got.indices, alone.indices)
        np.testing.assert_allclose(got.weights, alone.weights, rtol=1e-6)


def test_thumbnail_is_small_and_survives_nan() -> None:
    img = np.ones((300, 200), dtype=np.float32)
    img[10, 10] = np.nan
    th = thumbnail(img, size=32)
    assert th.shape == (32, 32) and np.isfinite(th).all()
    assert thumbnail(np.ones((10, 10, 3), dtype=np.float32)).shape == (64, 64, 3)


def _textured_slice() -> SliceTokens:
    """A 16 x 16 patch grid: a textured object in the top-left quarter, flat elsewhere."""
    rng = np.random.default_rng(3)
    img = np.full((256, 256, 3), 0.2, dtype=np.float32)
    img[:128, :128] = rng.random((128, 128, 3), dtype=np.float32)
    return patchify(img)


def test_patch_selection_keeps_the_object_plus_some_background() -> None:
    tok = _textured_slice()
    sel = select_patches([tok], keep=80, background_fraction=0.25)[0]
    assert len(sel.indices) == 80 and np.all(np.diff(sel.indices) > 0)
    in_object = (tok.coords[sel.indices] < 8).all(axis=1)
    assert in_object.sum() >= 60  # all 60 salient picks are object patches...
    assert (~in_object).sum() >= 1  # ...and background is sampled too
    assert sel.scores.shape == (80,) and sel.scores.dtype == np.float32


def test_patch_selection_is_seeded_and_independent_of_batch_company() -> None:
    tok = _textured_slice()
    other = patchify(np.random.default_rng(9).random((96, 300, 3), dtype=np.float32))
    alone = select_patches([tok], keep=80, seeds=[7])[0]
    again = select_patches([other, tok], keep=80, seeds=[1, 7])[1]
    np.testing.assert_array_equal(alone.indices, again.indices)
    reseeded = select_patches([tok], keep=80, seeds=[8])[0]
    assert not np.array_equal(alone.indices, reseeded.indices)


def test_slices_under_the_patch_budget_keep_all_patches() -> None:
    tok = patchify(np.random.default_rng(0).random((40, 40, 3), dtype=np.float32))
    sel = select_patches([tok], keep=256)[0]
    assert sel.indices.tolist() == list(range(tok.n_tokens))
    subset = tok.take(sel.indices)
    assert subset.grid == tok.grid and subset.patches.shape[1] == 3 * PATCH * PATCH
