"""Fixtures for the training-side tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def rng() -> torch.Generator:
    """A fixed-seed CPU generator: every test is reproducible."""
    return torch.Generator().manual_seed(1234)
