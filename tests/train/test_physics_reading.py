"""benchmarks/physics_reading.py: tokens set missing reach the scorer's own preprocessing."""

from __future__ import annotations

import math

import numpy as np

import mediqa_cli.physics as physics
from mediqa_cli.preprocess import preprocess_slice
from tests.benchmark_scripts import load_benchmark


def _slice() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.zeros((96, 96), np.float32)
    image[24:72, 20:76] = 400.0
    return image + rng.normal(0.0, 8.0, image.shape).astype(np.float32)


def test_tokens_missing_blanks_only_the_named_tokens_and_restores_the_measure():
    reading = load_benchmark("physics_reading")
    image = _slice()
    before = preprocess_slice(image, "MR", (1.0, 1.0), physics=True).physics
    names = reading.TOKEN_GROUPS["global (bias, ghosting, background)"]
    index = [physics.PHYSICS_FEATURES.index(n) for n in names]
    assert np.isfinite(before[index]).any()  # something to blank
    with reading.tokens_missing(names):
        during = preprocess_slice(image, "MR", (1.0, 1.0), physics=True).physics
    after = preprocess_slice(image, "MR", (1.0, 1.0), physics=True).physics
    assert all(math.isnan(float(during[i])) for i in index)
    keep = [i for i in range(physics.N_PHYSICS) if i not in index]
    np.testing.assert_array_equal(during[keep], before[keep])
    np.testing.assert_array_equal(after, before)


def test_every_token_group_names_known_tokens_and_all_covers_them():
    reading = load_benchmark("physics_reading")
    for names in reading.TOKEN_GROUPS.values():
        assert set(names) <= set(physics.PHYSICS_FEATURES)
    assert set(reading.TOKEN_GROUPS["all"]) == set(physics.PHYSICS_FEATURES)
    grouped = set().union(*(set(v) for k, v in reading.TOKEN_GROUPS.items() if k != "all"))
    assert grouped == set(physics.PHYSICS_FEATURES) - {"chroma"}  # chroma: colour only
