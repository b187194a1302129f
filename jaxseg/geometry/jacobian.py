"""Jacobian determinant of a transform ``x -> x + disp(x)`` and the share of folded voxels."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxseg.geometry.grid import check_field


@jax.jit
def jacobian_determinant(disp: jnp.ndarray) -> jnp.ndarray:
    """``det(I + grad disp)`` at every voxel, in voxel units.

    Finite differences as ``numpy.gradient``: second-order central differences
    ``(u[i+1] - u[i-1]) / 2`` in the interior and first-order one-sided differences on the first
    and last voxel of each axis (exact for affine fields everywhere). Axes of size 1 have zero
    derivative.

    Args:
      disp: ``(*S, N)``.

    Returns:
      ``(*S)``.
    """
    spatial = check_field(disp)
    ndim = len(spatial)
    columns = []
    for axis, size in enumerate(spatial):
        if size > 1:
            columns.append(jnp.gradient(disp, axis=axis))
        else:
            columns.append(jnp.zeros_like(disp))
    # grad[..., i, j] = d disp_i / d x_j
    grad = jnp.stack(columns, axis=-1)
    eye = jnp.eye(ndim, dtype=disp.dtype).reshape((1,) * ndim + (ndim, ndim))
    return jnp.linalg.det(grad + eye)


@jax.jit
def folding_fraction(disp: jnp.ndarray) -> jnp.ndarray:
    """Share of voxels whose Jacobian determinant is ``<= 0`` (folded) or not finite (a NaN or
    infinite displacement, or one so large that the determinant overflows: not a valid
    transform there either), a scalar in [0, 1]."""
    det = jacobian_determinant(disp)
    return jnp.mean(~(jnp.isfinite(det) & (det > 0)))
