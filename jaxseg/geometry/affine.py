"""Affine transforms about the grid centre (Atlas-ISTN eq. 1), in voxel units."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxseg.geometry.grid import identity_grid


def _rotation(angles: jnp.ndarray, ndim: int) -> jnp.ndarray:
    """``(N, N)`` rotation: one angle in 2D; in 3D ``R = R_0 @ R_1 @ R_2`` (about axes 0, 1, 2)."""
    if ndim == 2:
        c, s = jnp.cos(angles[0]), jnp.sin(angles[0])
        return jnp.stack([jnp.stack([c, -s]), jnp.stack([s, c])])
    rotation = jnp.eye(3, dtype=angles.dtype)
    for axis in range(3):
        i, j = [k for k in range(3) if k != axis]
        c, s = jnp.cos(angles[axis]), jnp.sin(angles[axis])
        plane = jnp.eye(3, dtype=angles.dtype)
        plane = plane.at[i, i].set(c).at[i, j].set(-s).at[j, i].set(s).at[j, j].set(c)
        rotation = rotation @ plane
    return rotation


@jax.jit
def affine_matrix(
    translation: jnp.ndarray, rotation: jnp.ndarray, log_scale: jnp.ndarray
) -> jnp.ndarray:
    """Homogeneous ``(N+1, N+1)`` matrix ``S @ R @ T`` acting on centred voxel coordinates.

    As in Atlas-ISTN (eq. 1 and the released code), a point ``p`` (relative to the grid
    centre) is first translated, then rotated, then scaled: ``p' = S R (p + t)`` with
    ``S = diag(exp(log_scale))``. All three factors are invertible, hence so is the matrix
    (``jnp.linalg.inv`` gives the inverse transform).

    Args:
      translation: ``(N,)`` in voxels, ``N`` in {2, 3}.
      rotation: angles in radians, ``(1,)`` in 2D, ``(3,)`` in 3D (``R = R_0 R_1 R_2``, ``R_k``
        rotating in the plane of the two axes other than ``k``).
      log_scale: ``(N,)``, natural log of the scale factor along each axis.

    Returns:
      ``(N+1, N+1)`` float matrix; batch with ``jax.vmap``.
    """
    translation = jnp.asarray(translation)
    ndim = translation.shape[-1] if translation.ndim == 1 else -1
    if ndim not in (2, 3):
        raise ValueError(f"translation must have shape (2,) or (3,), got {translation.shape}")
    n_angles = 1 if ndim == 2 else 3
    rotation = jnp.asarray(rotation, translation.dtype).reshape(-1)
    log_scale = jnp.asarray(log_scale, translation.dtype)
    if rotation.shape != (n_angles,) or log_scale.shape != (ndim,):
        raise ValueError(
            f"for N = {ndim}, rotation must have shape ({n_angles},) and log_scale ({ndim},); got "
            f"{rotation.shape} and {log_scale.shape}"
        )
    eye = jnp.eye(ndim + 1, dtype=translation.dtype)
    shift = eye.at[:ndim, ndim].set(translation)
    rotate = eye.at[:ndim, :ndim].set(_rotation(rotation, ndim))
    scale = eye.at[:ndim, :ndim].set(jnp.diag(jnp.exp(log_scale)))
    return scale @ rotate @ shift


@functools.partial(jax.jit, static_argnames=("shape",))
def affine_disp(matrix: jnp.ndarray, shape: Sequence[int]) -> jnp.ndarray:
    """Displacement field of the affine ``matrix`` applied about the centre of a grid.

    With ``c = (shape - 1) / 2``, voxel ``x`` maps to ``M[:N, :N] (x - c) + M[:N, N] + c``;
    the returned field is that point minus ``x``.

    Args:
      matrix: ``(N+1, N+1)`` homogeneous matrix, e.g. from :func:`affine_matrix`.
      shape: spatial shape ``S`` of ``N`` sizes (static).

    Returns:
      ``(*S, N)`` in voxels.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if matrix.shape != (ndim + 1, ndim + 1):
        raise ValueError(
            f"matrix must have shape ({ndim + 1}, {ndim + 1}) for a grid of shape {shape}, "
            f"got {matrix.shape}"
        )
    lead = (1,) * ndim
    centre = ((jnp.asarray(shape, jnp.float32) - 1) / 2).reshape(*lead, ndim)
    points = identity_grid(shape) - centre
    moved = points @ matrix[:ndim, :ndim].T + matrix[:ndim, ndim].reshape(*lead, ndim)
    return moved - points
