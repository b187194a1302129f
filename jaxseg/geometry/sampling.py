"""Resampling of images and fields: ``warp``, ``compose`` and ``resize_field``.

Conventions (DESIGN.md): coordinates are voxel indices, a displacement field ``disp`` has shape
``(*S, N)`` and component ``i`` moves along spatial axis ``i``;
``warp(image, disp)(x) = image(x + disp(x))`` (pull-back, what ``grid_sample`` computes with
``align_corners=True`` after conversion to voxel units).

Implementation note: interpolation gathers from the flattened image with one integer base index
per output voxel and constant offsets for the ``2**N`` corners. On CPU this lets XLA fuse index
arithmetic, the scalar gathers and the weighting into one loop; it measured about 3.5x faster
than ``jax.scipy.ndimage.map_coordinates`` and slightly faster than PyTorch's ``grid_sample`` at
128^3 (see :mod:`jaxseg.bench.svf`). The ``"zeros"`` mode pads the image with one zero voxel on
every side and then samples the padded image with clamped coordinates, which gives exactly the
zero-padding semantics of ``grid_sample`` (each out-of-range corner contributes 0).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxseg.geometry.grid import check_field, identity_grid

_MODES = ("border", "zeros")
_GATHER = lax.GatherDimensionNumbers(
    offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,)
)


def _take(flat: jnp.ndarray, index: jnp.ndarray) -> jnp.ndarray:
    """``flat[index]`` for in-range ``index`` (callers clamp), as a fusible scalar gather."""
    return lax.gather(
        flat,
        index[..., None],
        _GATHER,
        slice_sizes=(1,),
        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


@functools.partial(jax.jit, static_argnames=("order", "mode"))
def warp(
    image: jnp.ndarray, disp: jnp.ndarray, *, order: int = 1, mode: str = "border"
) -> jnp.ndarray:
    """Resample ``image`` at ``x + disp(x)`` for every voxel ``x`` of ``disp``'s grid.

    Args:
      image: ``(*S_in)`` or ``(*S_in, C)`` (channels last), any dtype. ``S_in`` may differ from
        ``disp``'s grid; coordinates always refer to ``image``'s voxel indices.
      disp: displacement field ``(*S, N)`` in voxels, ``N = len(S_in) = len(S)``.
      order: 0 (nearest, rounding half to even as ``grid_sample``) or 1 ((bi/tri)linear).
      mode: ``"border"`` clamps coordinates to the image (``map_coordinates`` mode
        ``"nearest"``, ``grid_sample`` ``padding_mode="border"``); ``"zeros"`` treats voxels
        outside the image as 0 (``grid_sample`` ``padding_mode="zeros"``).

    Returns:
      ``(*S)`` or ``(*S, C)``. Order 1 returns a floating dtype (``image``'s if floating,
      else float32); order 0 keeps ``image``'s dtype. Differentiable in ``image`` and, for
      order 1, in ``disp``.

    Non-finite input stays visible. A voxel whose displacement is not finite (NaN or infinite:
    it names no point) gets NaN for a floating image and, for an integer image (order 0), which
    has no NaN, the dtype's minimum (signed) or maximum (unsigned), never a plausible label (a
    bool image gets False). With order 1 a non-finite image value reaches every output whose
    interpolation cell holds it, even with weight 0 (``0 * nan`` is NaN): the voxels next to it
    become NaN too. (Masking zero weights would cost this function, which is bound by memory
    traffic, about a third of its speed on CPU.)
    """
    spatial = check_field(disp)
    ndim = len(spatial)
    if image.ndim not in (ndim, ndim + 1):
        raise ValueError(
            f"image must have shape (*S_in) or (*S_in, C) with len(S_in) = {ndim} to match disp "
            f"{disp.shape}, got {image.shape}"
        )
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order!r}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")

    squeeze = image.ndim == ndim
    if squeeze:
        image = image[..., None]
    if order == 1 and not jnp.issubdtype(image.dtype, jnp.floating):
        image = image.astype(jnp.float32)
    pad = 1 if mode == "zeros" else 0
    if pad:
        image = jnp.pad(image, [(pad, pad)] * ndim + [(0, 0)])
    in_shape = image.shape[:ndim]
    channels = image.shape[-1]
    grid = identity_grid(spatial).astype(disp.dtype)
    points = [grid[..., i] + disp[..., i] + pad for i in range(ndim)]
    coords = [jnp.clip(x, 0, n - 1) for x, n in zip(points, in_shape)]
    strides = np.cumprod((1, *in_shape[:0:-1]))[::-1].tolist()
    # Channel-major flat copies, so that each gather reads one contiguous plane.
    flat = jnp.moveaxis(image, -1, 0).reshape(channels, -1)

    if order == 0:
        index = sum(jnp.round(x).astype(jnp.int32) * s for x, s in zip(coords, strides))
        out = jnp.stack([_take(flat[c], index) for c in range(channels)], axis=-1)
    else:
        # Lower corner, kept one below the last index so that every upper corner exists; the
        # fraction is then 1 exactly at the last voxel. Axes of size 1 have no upper corner:
        # their fraction is 0 and the upper weight vanishes.
        low = [jnp.minimum(jnp.floor(x), max(n - 2, 0)) for x, n in zip(coords, in_shape)]
        frac = [x - lo for x, lo in zip(coords, low)]
        base = sum(lo.astype(jnp.int32) * s for lo, s in zip(low, strides))
        corners = []
        for bits in itertools.product((0, 1), repeat=ndim):
            offset = sum(s for b, s, n in zip(bits, strides, in_shape) if b and n > 1)
            weight = functools.reduce(jnp.multiply, [f if b else 1 - f for b, f in zip(bits, frac)])
            corners.append((offset, weight))
        out = jnp.stack(
            [sum(w * _take(flat[c], base + o) for o, w in corners) for c in range(channels)],
            axis=-1,
        )
    valid = functools.reduce(jnp.logical_and, [jnp.isfinite(x) for x in points])
    out = jnp.where(valid[..., None], out, _invalid_value(out.dtype))
    return out[..., 0] if squeeze else out


def _invalid_value(dtype) -> float | int | bool:
    """What warping writes where the displacement is not finite."""
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.nan
    if dtype == jnp.bool_:
        return False
    info = jnp.iinfo(dtype)
    return info.min if jnp.issubdtype(dtype, jnp.signedinteger) else info.max


@jax.jit
def compose(disp_a: jnp.ndarray, disp_b: jnp.ndarray) -> jnp.ndarray:
    """Displacement of ``x -> phi_a(phi_b(x))`` where ``phi(x) = x + disp(x)``.

    ``compose(a, b)(x) = b(x) + a(x + b(x))``, so that
    ``warp(image, compose(a, b)) ≈ warp(warp(image, a), b)`` (equal up to interpolation).
    ``disp_a`` is sampled with linear interpolation and border clamping.

    Args:
      disp_a: ``(*S_a, N)``; disp_b: ``(*S, N)`` in voxels of ``disp_a``'s grid.

    Returns:
      ``(*S, N)``.
    """
    check_field(disp_a, "disp_a")
    check_field(disp_b, "disp_b")
    if disp_a.shape[-1] != disp_b.shape[-1]:
        raise ValueError(
            f"disp_a and disp_b must have the same number of components, got {disp_a.shape} "
            f"and {disp_b.shape}"
        )
    return disp_b + warp(disp_a, disp_b, order=1, mode="border")


@functools.partial(jax.jit, static_argnames=("shape",))
def resize_field(disp: jnp.ndarray, shape: Sequence[int]) -> jnp.ndarray:
    """Resample a displacement (or velocity) field to a grid of ``shape``, in the new voxels.

    Voxel centres are aligned (``align_corners=False``, as the half-resolution flow of
    Atlas-ISTN is upsampled): new voxel ``j`` sits at old coordinate
    ``(j + 0.5) * n_old / n_new - 0.5``, clamped to the old grid, and values are linearly
    interpolated, separably along each axis. Component ``i`` is multiplied by
    ``n_new_i / n_old_i`` so that it stays a displacement in voxels of the new grid.

    Args:
      disp: ``(*S, N)`` in voxels of ``S``.
      shape: the new spatial shape, ``N`` sizes (a tuple, static under jit).

    Returns:
      ``(*shape, N)``.
    """
    old = check_field(disp)
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(old) or min(shape) < 1:
        raise ValueError(
            f"shape must have {len(old)} positive sizes for a field of shape {disp.shape}, "
            f"got {shape}"
        )
    out = disp
    for axis, (n_old, n_new) in enumerate(zip(old, shape, strict=True)):
        out = jnp.moveaxis(
            jnp.tensordot(_linear_weights(n_old, n_new), out, axes=([1], [axis])), 0, axis
        )
    scale = jnp.asarray([n / o for n, o in zip(shape, old, strict=True)], dtype=disp.dtype)
    return out * scale.reshape((1,) * len(shape) + (-1,))


def _linear_weights(n_old: int, n_new: int) -> np.ndarray:
    """``(n_new, n_old)`` matrix of 1-D linear interpolation with aligned voxel centres."""
    src = np.clip((np.arange(n_new) + 0.5) * n_old / n_new - 0.5, 0, n_old - 1)
    low = np.minimum(np.floor(src), max(n_old - 2, 0)).astype(int)
    frac = src - low
    weights = np.zeros((n_new, n_old), np.float32)
    rows = np.arange(n_new)
    weights[rows, low] += 1 - frac
    weights[rows, np.minimum(low + 1, n_old - 1)] += frac
    return weights
