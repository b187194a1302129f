"""Signed distance maps (SDM) of binary masks, the shape target of SASSNet, DTC and DTML.

Definition (the ``compute_sdf`` of the SASSNet/DTC/DTML reference code). For a binary mask ``M``
with both foreground and background voxels, and Euclidean distances between voxel centres in
units of ``spacing`` (mm),

* ``posdis(x)``: for a foreground voxel, the distance to the nearest background voxel; 0 on the
  background (``scipy.ndimage.distance_transform_edt(M, sampling=spacing)``);
* ``negdis(x)``: for a background voxel, the distance to the nearest foreground voxel; 0 on the
  foreground (``distance_transform_edt(~M, sampling=spacing)``);
* ``sdm = negdis / max(negdis) - posdis / max(posdis)``, then ``sdm = 0`` on the inner boundary:
  the foreground voxels with a face-adjacent background voxel (4-neighbourhood in 2D, 6 in 3D)
  inside the array, which is ``skimage.segmentation.find_boundaries(M, mode="inner")``. The
  array edge is not a boundary, and the boundary does not depend on ``spacing``.

The result is negative inside, positive outside, 0 on the inner boundary, in ``[-1, 1]``. (The
reference writes the normalisation as ``(d - min d) / (max d - min d)``; with both classes present
``min d = 0``, so it is the same.) A mask with no foreground or no background has no signed
distance; it gives zeros (the reference gives zeros for an empty mask and NaN for a full one).

Algorithm: an exact separable squared Euclidean distance transform in JAX, so it runs inside a
jitted step on any backend. Both distances are computed at once in one field, ``q(x)``, the
squared distance from ``x`` to the nearest voxel of the other class, since ``posdis`` is ``sqrt(q)``
on the foreground and ``negdis`` is ``sqrt(q)`` on the background.

1. Along the first spatial axis ``q`` is the squared distance to the nearest voxel of the other
   class on the same line, from a forward and a backward scan (``O(n)`` per line).
2. Along every further axis ``a`` (last axis first), with ``s`` its spacing,
   ``q(y) <- min(min_y' [q(y') + ((y - y') * s)**2], (r_a(y) * s)**2)``, where ``r_a(y)`` is the
   number of steps along ``a`` from ``y`` to the nearest voxel of the other class (a scan as in
   step 1). The brute-force minimum over all ``y'`` on the line (``O(n**2)`` per line, which
   vectorises well) is the exact lower envelope of Felzenszwalb & Huttenlocher; taking it over
   voxels ``y'`` of either class is exact because a ``y'`` of the other class contributes at
   least ``((y - y') * s)**2``, whose minimum is the second term.

All arithmetic is in the requested floating ``dtype`` (float32 by default, float64 for a
float64 training step); squared distances are exact while they stay below ``2**24`` in float32
(``2**53`` in float64; in squared voxel steps for unit spacing). Lines without a voxel of the
other class carry ``inf`` until a later axis reaches one. The output is piecewise constant in
``mask``, so its gradient with respect to ``mask`` is zero: it is a regression target, not a
differentiable layer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import DTypeLike

__all__ = ["sdm_to_mask", "signed_distance_map"]


def _run_distance(mask: jax.Array, axis: int, dtype) -> jax.Array:
    """Steps along ``axis`` from each voxel to the nearest voxel of the other class.

    ``mask``: bool ``(*S)``. Returns ``dtype`` ``(*S)``: 1 for a voxel whose neighbour along
    ``axis`` differs, ``inf`` where the line holds a single class.
    """
    lines = jnp.moveaxis(mask, axis, 0)

    def step(carry, voxel):
        previous, steps = carry
        steps = jnp.where(voxel == previous, steps + 1.0, 1.0)
        return (voxel, steps), steps

    unreached = jnp.full(lines.shape[1:], jnp.inf, dtype)
    _, forward = lax.scan(step, (lines[0], unreached), lines)
    _, backward = lax.scan(step, (lines[-1], unreached), lines, reverse=True)
    return jnp.moveaxis(jnp.minimum(forward, backward), 0, axis)


def _min_plus(q: jax.Array, axis: int, step: jax.Array) -> jax.Array:
    """``h(y) = min_y' [q(y') + ((y - y') * step)**2]`` along ``axis`` (>= 1) of ``q`` ``(*S)``.

    The minimum is a broadcast reduction over the ``(y, y')`` pairs of each line, evaluated in a
    loop over the slices of axis 0. The loop keeps the live set to one slice and keeps XLA from
    fusing consecutive passes into one computation that would redo the inner pass for every
    output of the outer one.
    """
    n = q.shape[axis]
    position = jnp.arange(n, dtype=step.dtype)
    kernel = ((position[:, None] - position[None, :]) * step) ** 2  # (y, y')
    lead, tail = q.shape[1:axis], q.shape[axis + 1 :]
    kernel = kernel.reshape((1,) * len(lead) + (n, n) + (1,) * len(tail))

    def one_slice(plane: jax.Array) -> jax.Array:
        pairs = plane.reshape((*lead, 1, n, *tail)) + kernel  # lead + (y, y') + tail
        return jnp.min(pairs, axis=len(lead) + 1)

    return lax.map(one_slice, q)


def _squared_distance_to_other_class(mask: jax.Array, spacing: jax.Array) -> jax.Array:
    """Squared distance (in ``spacing`` units) from each voxel to the nearest of the other class.

    ``mask``: bool ``(*S)``; ``spacing``: floating ``(ndim,)``. Returns ``(*S)`` of the dtype of
    ``spacing``, ``inf`` everywhere when ``mask`` holds a single class.
    """
    first = _run_distance(mask, 0, spacing.dtype) * spacing[0]
    q = first * first
    for axis in range(mask.ndim - 1, 0, -1):
        along = _run_distance(mask, axis, spacing.dtype) * spacing[axis]
        q = jnp.minimum(_min_plus(q, axis, spacing[axis]), along * along)
    return q


def _inner_boundary(mask: jax.Array) -> jax.Array:
    """Foreground voxels with a face-adjacent background voxel inside the array, bool ``(*S)``."""
    background = ~mask
    touches = jnp.zeros_like(mask)
    for axis in range(mask.ndim):
        n = mask.shape[axis]
        widths = [(0, 0)] * mask.ndim
        widths[axis] = (1, 1)
        padded = jnp.pad(background, widths, constant_values=False)
        before = lax.slice_in_dim(padded, 0, n, axis=axis)
        after = lax.slice_in_dim(padded, 2, n + 2, axis=axis)
        touches = touches | before | after
    return mask & touches


def _signed_distance(mask: jax.Array, spacing: jax.Array, normalize: bool) -> jax.Array:
    """The SDM of one binary mask: bool ``(*S)`` -> ``(*S)`` of the dtype of ``spacing``."""
    has_both = jnp.any(mask) & jnp.any(~mask)
    distance = jnp.sqrt(_squared_distance_to_other_class(mask, spacing))
    distance = jnp.where(has_both, distance, 0.0)
    if not normalize:
        return jnp.where(mask, -distance, distance)
    posdis = jnp.where(mask, distance, 0.0)
    negdis = jnp.where(mask, 0.0, distance)
    pos_max = jnp.where(has_both, jnp.max(posdis), 1.0)
    neg_max = jnp.where(has_both, jnp.max(negdis), 1.0)
    sdm = negdis / neg_max - posdis / pos_max
    return jnp.where(_inner_boundary(mask), 0.0, sdm)


@functools.partial(jax.jit, static_argnames=("normalize", "one_hot"))
def _signed_distance_map(
    mask: jax.Array, spacing: jax.Array, *, normalize: bool, one_hot: bool
) -> jax.Array:
    """:func:`signed_distance_map` after validation; one compiled program per shape and dtype
    (the result has the dtype of ``spacing``).

    The distances are computed with ``spacing / max(spacing)`` and scaled back (the normalised
    SDM does not depend on a common scale), so that squared distances neither overflow for huge
    voxel sizes nor underflow for tiny ones; a spacing that is not finite and positive (possible
    only when traced), or more anisotropic than :data:`MAX_ANISOTROPY`, gives NaN everywhere."""
    foreground = mask != 0
    scale = jnp.max(spacing)
    unit = spacing / scale
    if one_hot:
        per_channel = jax.vmap(_signed_distance, in_axes=(-1, None, None), out_axes=-1)
        sdm = per_channel(foreground, unit, normalize)
    else:
        sdm = _signed_distance(foreground, unit, normalize)
    if not normalize:
        sdm = sdm * scale
    return jnp.where(_valid_spacing(spacing), sdm, jnp.nan)


#: The largest ratio of two voxel sizes of one spacing (a scanner's are within 20 or so): the
#: squared distances along the finest axis, relative to the coarsest, then stay far from
#: float32's underflow.
MAX_ANISOTROPY = 1e6


def _valid_spacing(spacing) -> jax.Array | np.ndarray:
    """Finite, positive and within :data:`MAX_ANISOTROPY` (NumPy or JAX arrays)."""
    xp = np if isinstance(spacing, np.ndarray) else jnp
    positive = xp.all(xp.isfinite(spacing) & (spacing > 0))
    return positive & (xp.max(spacing) <= MAX_ANISOTROPY * xp.min(spacing))


def _check_spacing(spacing, ndim: int, shape: tuple[int, ...], dtype) -> jax.Array:
    """``spacing`` as ``dtype`` ``(ndim,)`` (ones for None); ValueError if malformed."""
    if spacing is None:
        return jnp.ones((ndim,), dtype)
    values = jnp.asarray(spacing, dtype=dtype)
    if values.shape != (ndim,):
        raise ValueError(
            f"spacing must have shape ({ndim},), one value per spatial axis of the mask "
            f"(spatial shape {shape}); got shape {values.shape}"
        )
    if not isinstance(values, jax.core.Tracer):
        concrete = np.asarray(values, np.float64)
        if not _valid_spacing(concrete):
            raise ValueError(
                f"spacing must be finite, positive and within a factor {MAX_ANISOTROPY:g} of "
                f"each other; got {concrete.tolist()}"
            )
    return values


def signed_distance_map(
    mask: jax.Array,
    *,
    spacing: Sequence[float] | jax.Array | None = None,
    normalize: bool = True,
    one_hot: bool = False,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    """Signed distance map of a binary mask (SASSNet/DTC/DTML ``compute_sdf``).

    ``sdm = negdis / max(negdis) - posdis / max(posdis)``, set to 0 on the inner boundary, where
    ``posdis`` is each foreground voxel's Euclidean distance to the nearest background voxel and
    ``negdis`` each background voxel's distance to the nearest foreground voxel (see the module
    docstring for the full definition and the algorithm). Exact: equal to the scipy/skimage
    reference up to the rounding of ``dtype``.

    Args:
      mask: ``(*S)`` with ``len(S) >= 1`` (2D ``(H, W)``, 3D ``(D, H, W)``, ...); nonzero is
        foreground. With ``one_hot=True``, ``(*S, C)``: the last axis holds C masks (for instance
        a one-hot encoding, background channel included), each transformed on its own. For a
        batch, use ``jax.vmap``.
      spacing: voxel size along each spatial axis (``len(S)`` finite positive values, mm,
        within a factor :data:`MAX_ANISOTROPY` = 1e6 of each other), as ``sampling`` in
        ``scipy.ndimage.distance_transform_edt``; None means 1. Any scale works (1e-30 to 1e30:
        the computation is relative to the largest value). May be traced (for instance vmapped
        per sample): then an invalid spacing cannot raise and makes the whole result NaN.
      normalize: True (the default) gives the normalised SDM above, in ``[-1, 1]``. False gives
        the plain signed distance ``negdis - posdis`` in units of ``spacing``, with no boundary
        zeroing: ``-d`` inside (``d >= min(spacing)`` the distance to the nearest background
        voxel), ``+d`` outside, so it is never 0 and its sign recovers ``mask`` exactly.
      one_hot: whether the last axis of ``mask`` indexes channels (see ``mask``).
      dtype: floating dtype of the result and of all the arithmetic (float32 by default; a
        float64 training step passes float64, which needs ``jax_enable_x64``).

    Returns:
      ``dtype`` array of the shape of ``mask``. Zeros for a mask (or channel) with no foreground
      or no background, for both values of ``normalize``; never NaN for a valid spacing.

    Raises:
      ValueError: ``mask`` has no spatial axis or is empty, ``spacing`` does not have shape
        ``(len(S),)`` or (when concrete) is not valid (see ``spacing``), or ``dtype`` is not a
        floating dtype.
    """
    shape = tuple(np.shape(mask))
    spatial = shape[:-1] if one_hot else shape
    if not spatial or 0 in shape:
        expected = "(*S, C)" if one_hot else "(*S)"
        raise ValueError(
            f"mask must have shape {expected} with at least one spatial axis and no empty axis; "
            f"got shape {shape}"
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype, got {jnp.dtype(dtype)}")
    spacing = _check_spacing(spacing, len(spatial), spatial, jnp.dtype(dtype))
    return _signed_distance_map(mask, spacing, normalize=normalize, one_hot=one_hot)


def sdm_to_mask(sdm: jax.Array, k: float = 1500.0) -> jax.Array:
    """Soft mask from a signed distance map: ``sigmoid(-k * sdm)`` (DTML, eq. 2).

    Args:
      sdm: signed distance map of any shape, negative inside.
      k: steepness; 1500 as in the DTML reference code.

    Returns:
      Array of the shape of ``sdm``, in ``[0, 1]``: above 0.5 where ``sdm < 0``, 0.5 where
      ``sdm == 0`` (the inner boundary of a normalised SDM), below 0.5 outside.
    """
    return jax.nn.sigmoid(-k * jnp.asarray(sdm))
