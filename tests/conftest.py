"""Strict test configuration: implicit rank promotion is an error in every test."""

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng():
    """A numpy generator with a fixed seed, one per test."""
    return np.random.default_rng(0)
