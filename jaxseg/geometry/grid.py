"""Voxel coordinate grids and the shape checks shared by the geometry functions."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp


def identity_grid(shape: Sequence[int]) -> jnp.ndarray:
    """Voxel coordinates of a grid.

    Args:
      shape: spatial shape ``S`` of ``N`` dimensions.

    Returns:
      float32 array of shape ``(*S, N)`` with ``grid[i, j, ..., k] = (i, j, ..., k)``.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"identity_grid expects a non-empty shape of positive sizes, got {shape}")
    axes = [jnp.arange(s, dtype=jnp.float32) for s in shape]
    return jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)


def check_field(field: jnp.ndarray, name: str = "disp") -> tuple[int, ...]:
    """Check that ``field`` is a displacement/velocity field ``(*S, N)`` with ``N == len(S)``.

    Returns the spatial shape ``S``. Raises ValueError naming the expected shape otherwise.
    """
    if field.ndim < 2 or field.shape[-1] != field.ndim - 1:
        raise ValueError(
            f"{name} must have shape (*S, N) with N = len(S) (e.g. (X, Y, Z, 3) or (X, Y, 2)), "
            f"got {field.shape}"
        )
    if not jnp.issubdtype(field.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point field, got dtype {field.dtype}")
    return tuple(field.shape[:-1])
