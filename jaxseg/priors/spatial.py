"""STIPPLE's 3D spatial prior: building it from labels, placing it in a volume, positioning it.

Petit, Thome, Soler, IJCARS 2022, "3D spatial priors for semi-supervised organ segmentation".
The prior of an organ is a ``(Wp, Hp, B)`` array: the probability that a voxel of an in-plane
``Wp x Hp`` window centred on the organ belongs to it, for each of ``B`` bins along the axial
axis Z, where the window covers the organ's extent along Z stretched onto the ``B`` bins.

Conventions (shared by the three functions). Volumes are ``(X, Y, Z)`` with Z axial. The centre
of an organ is the centre of its bounding box rounded down, ``(lo + hi) // 2`` on each axis with
``lo``, ``hi`` the first and last voxel indices of the organ. A window of size ``(a, b, c)``
centred at ``centre`` covers the voxels ``centre - (a, b, c) // 2 + (i, j, s)`` for
``0 <= i < a``, ``0 <= j < b``, ``0 <= s < c``; slice ``s`` of a window of ``c`` slices belongs
to bin ``s * B // c`` (Algorithm 1 of the paper).

* :func:`build_spatial_prior` (NumPy, data preparation): the prior from labelled volumes, the
  organs centred by :func:`bounding_box`.
* :func:`place_prior` (JAX): the per-voxel prior volume of one case, for eq. 2-3.
* :func:`locate_prior` (JAX): the organ centre in an unlabelled volume, by a KL search over
  translations (section 3.2).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["bounding_box", "build_spatial_prior", "locate_prior", "place_prior"]


def _positive_ints(values, name: str, count: int, *, allow_zero: bool = False) -> tuple[int, ...]:
    """``values`` (an int, or ``count`` ints) as a tuple of ``count`` Python ints."""
    if np.ndim(values) == 0:
        values = (values,) * count
    try:
        ints = tuple(operator.index(v) for v in values)
    except TypeError:
        ints = ()
    lowest = 0 if allow_zero else 1
    if len(ints) != count or min(ints) < lowest:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {count} {kind} ints, got {values!r}")
    return ints


def _as_float(x) -> jax.Array:
    """``x`` as a JAX array of at least float32 precision (float64 stays float64)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """First and last indices ``(lo, hi)`` (int64 arrays, one entry per axis) of the non-zero
    voxels of ``mask``, None when it has none; the organ centre of Algorithm 1 is
    ``(lo + hi) // 2``. NumPy (data preparation)."""
    points = np.argwhere(mask)
    if points.size == 0:
        return None
    return points.min(axis=0), points.max(axis=0)


def _window(mask: np.ndarray, start: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """The int64 crop ``mask[start : start + size]``, zero where it leaves the volume."""
    out = np.zeros(size, np.int64)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + np.array(size), mask.shape)
    if np.all(hi > lo):
        source = tuple(slice(a, b) for a, b in zip(lo, hi))
        target = tuple(slice(a, b) for a, b in zip(lo - start, hi - start))
        out[target] = mask[source]
    return out


def _binary_prior(masks: list[np.ndarray], bins: int, size: tuple[int, ...] | None) -> np.ndarray:
    """Algorithm 1 for one organ: bool ``(X_n, Y_n, Z_n)`` masks -> float32 ``(Wp, Hp, bins)``."""
    boxes = [(mask, box) for mask in masks if (box := bounding_box(mask)) is not None]
    if not boxes:
        raise ValueError("no label volume contains the organ: its spatial prior is undefined")
    if size is None:
        size = tuple(int(n) for n in np.max([hi - lo + 1 for _, (lo, hi) in boxes], axis=0))
    depth = size[2]
    if depth < bins:
        raise ValueError(
            f"the window has {depth} slices along Z, fewer than bins={bins}: some bins would "
            "receive no slice; use fewer bins or a larger size"
        )
    slice_bin = np.arange(depth) * bins // depth
    first = np.searchsorted(slice_bin, np.arange(bins))  # first slice of each bin
    total = np.zeros((size[0], size[1], bins), np.int64)
    for mask, (lo, hi) in boxes:
        start = (lo + hi) // 2 - np.array(size) // 2
        total += np.add.reduceat(_window(mask, start, size), first, axis=2)
    slices = len(boxes) * np.diff(np.append(first, depth))  # slices added to each bin
    return (total / slices).astype(np.float32)


def build_spatial_prior(
    labels: Sequence[np.ndarray],
    *,
    bins: int,
    size: Sequence[int] | None = None,
    classes: Sequence[int] | None = None,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """The spatial prior of an organ from labelled volumes (Algorithm 1 of the paper).

    For each label volume that contains the organ: its centre is the centre of its bounding box
    rounded down; the window ``size = (Wp, Hp, Dz)`` starts at ``centre - size // 2`` on each
    axis (voxels outside the volume count as background); slice ``s`` of the window
    (``0 <= s < Dz``) is added to bin ``s * bins // Dz``. Each bin is then the sum of its slices
    over all volumes divided by the number of slices added to it, i.e. the frequency of the
    organ at that in-plane position and relative axial position.

    The centre rounds down, so along an axis where the organ's extent is even a window of that
    same size starts one voxel before the bounding box and leaves out its last voxel; a
    ``size`` one larger keeps the whole organ.

    This is a NumPy function (data preparation, run once on the host): the volumes may have
    different shapes, and it is not traceable by JAX.

    Args:
      labels: a sequence of integer (or bool) label volumes ``(X_n, Y_n, Z_n)``, shapes may
        differ. With ``classes=None`` every non-zero voxel is organ; volumes with no organ voxel
        are skipped (they have no centre).
      bins: number ``B`` of axial bins, a positive int at most ``Dz``.
      size: the window ``(Wp, Hp, Dz)`` in voxels. None (default): the largest bounding-box
        extent of the organ over ``labels``, per axis (per class with ``classes``).
      classes: multi-class input: the label values of the organs, one prior per value, each
        built from ``label == value`` as above (its own default size; a volume lacking the
        class is skipped for it). None (default): one binary organ, ``label != 0``.

    Returns:
      With ``classes=None``, float32 ``(Wp, Hp, bins)`` with values in [0, 1]. With
      ``classes``, a tuple of such arrays, one per entry of ``classes``, in that order.

    Raises:
      ValueError: ``labels`` is empty or holds a volume that is not 3-D, ``bins`` or ``size``
        is not positive, ``Dz < bins``, or no volume contains the organ (or a class).
    """
    volumes = [np.asarray(label) for label in labels]
    if not volumes or any(volume.ndim != 3 for volume in volumes):
        shapes = [volume.shape for volume in volumes]
        raise ValueError(
            f"labels must be a non-empty sequence of (X, Y, Z) volumes; got shapes {shapes}"
        )
    (bins,) = _positive_ints((bins,), "bins", 1)
    if size is not None:
        size = _positive_ints(size, "size", 3)
    if classes is None:
        return _binary_prior([volume != 0 for volume in volumes], bins, size)
    return tuple(_binary_prior([volume == c for volume in volumes], bins, size) for c in classes)


@functools.partial(jax.jit, static_argnames=("shape", "extent", "floor"))
def _place(
    prior: jax.Array, center: jax.Array, *, shape: tuple[int, ...], extent: int, floor: float
) -> jax.Array:
    """:func:`place_prior` after validation: one gather with index arithmetic."""
    width, height, bins = prior.shape
    start = center.astype(jnp.int32) - jnp.array([width // 2, height // 2, extent // 2])
    i = jnp.arange(shape[0]).reshape(-1, 1, 1) - start[0]
    j = jnp.arange(shape[1]).reshape(1, -1, 1) - start[1]
    s = jnp.arange(shape[2]).reshape(1, 1, -1) - start[2]
    inside = (i >= 0) & (i < width) & (j >= 0) & (j < height) & (s >= 0) & (s < extent)
    slice_bin = jnp.asarray(np.arange(extent) * bins // extent)
    values = prior[
        jnp.clip(i, 0, width - 1), jnp.clip(j, 0, height - 1), slice_bin[jnp.clip(s, 0, extent - 1)]
    ]
    return jnp.clip(jnp.where(inside, values, floor), floor, 1.0 - floor).astype(prior.dtype)


def place_prior(
    prior: jax.Array,
    center: jax.Array,
    shape: Sequence[int],
    extent: int,
    *,
    floor: float = 1e-6,
) -> jax.Array:
    """The per-voxel prior volume of a case whose organ is centred at ``center``.

    The ``(Wp, Hp, B)`` prior is placed as in Algorithm 1: the window of size
    ``(Wp, Hp, extent)`` starts at ``center - (Wp, Hp, extent) // 2``, the bins are stretched
    over its ``extent`` slices (slice ``s`` takes bin ``s * B // extent``), and voxels outside
    the window get ``floor``. The result is then clipped to ``[floor, 1 - floor]``.

    Effect of ``floor`` on the prior-driven activations (eq. 2-3): the organ logit is shifted
    by ``log(p) - log(1 - p)``, which the clipping bounds by ``log(floor) - log(1 - floor)``
    from below (-13.8 for the default 1e-6: outside the window the organ is strongly suppressed)
    and by its opposite from above, so no voxel is decided by the prior alone: a logit beyond
    13.8 in magnitude still overrides it, and the gradient with respect to the logits stays
    finite and non-zero. ``floor=0`` keeps the raw
    prior (0 outside the window, where the activations then give 0 up to ``exp(-87)``).

    Pure JAX and jit-able with ``shape`` and ``extent`` static and ``center`` traced; one gather
    with index arithmetic, no loop over voxels.

    Args:
      prior: ``(Wp, Hp, B)`` prior of :func:`build_spatial_prior`.
      center: integer ``(3,)`` voxel indices ``(x, y, z)`` of the organ centre (may lie outside
        the volume).
      shape: ``(X, Y, Z)`` of the volume (static).
      extent: number of slices along Z the ``B`` bins are stretched over (static, positive),
        e.g. the ``Dz`` of the prior's window or the organ's estimated axial extent.
      floor: value outside the window and lower bound of the result, in ``[0, 0.5)``.

    Returns:
      float32 ``(X, Y, Z)`` (float64 for a float64 ``prior``), values in
      ``[floor, 1 - floor]``.

    Raises:
      ValueError: ``prior`` is not ``(Wp, Hp, B)``, ``center`` is not an integer ``(3,)``,
        ``shape`` or ``extent`` is not positive, or ``floor`` is outside ``[0, 0.5)``.
    """
    prior = _as_float(prior)
    center = jnp.asarray(center)
    if prior.ndim != 3 or 0 in prior.shape:
        raise ValueError(f"prior must have shape (Wp, Hp, B), got {prior.shape}")
    if center.shape != (3,) or not jnp.issubdtype(center.dtype, jnp.integer):
        raise ValueError(
            f"center must be an integer array of shape (3,), got {center.dtype} {center.shape}"
        )
    shape = _positive_ints(shape, "shape", 3)
    (extent,) = _positive_ints((extent,), "extent", 1)
    if not 0.0 <= floor < 0.5:
        raise ValueError(f"floor must lie in [0, 0.5), got {floor}")
    return _place(prior, center, shape=shape, extent=extent, floor=float(floor))


def _centroid(probs: jax.Array) -> jax.Array:
    """Probability-weighted centroid of ``probs`` ``(X, Y, Z)``, rounded (halves up), int32
    ``(3,)``; the volume centre ``shape // 2`` when ``probs`` sums to 0."""
    total = jnp.sum(probs)
    centre = []
    for axis, n in enumerate(probs.shape):
        others = tuple(a for a in range(3) if a != axis)
        marginal = jnp.sum(probs, axis=others)
        mass = jnp.sum(marginal * jnp.arange(n, dtype=probs.dtype))
        rounded = jnp.floor(mass / jnp.where(total > 0, total, 1) + 0.5).astype(jnp.int32)
        centre.append(jnp.where(total > 0, rounded, n // 2))
    return jnp.stack(centre)


@functools.partial(jax.jit, static_argnames=("search", "eps"))
def _locate(
    probs: jax.Array, reference: jax.Array, *, search: tuple[int, ...], eps: float
) -> jax.Array:
    """:func:`locate_prior` after validation: all candidates at once with ``jax.vmap``."""
    size = np.array(reference.shape)
    half = size // 2
    before = half + np.array(search)  # padding so that no candidate window is clamped
    after = size - half - 1 + np.array(search)
    padded = jnp.clip(jnp.pad(probs, list(zip(before, after))), eps, 1.0 - eps)
    log_q, log_not_q = jnp.log(padded), jnp.log1p(-padded)
    r = jnp.clip(reference, eps, 1.0 - eps)
    coarse = _centroid(probs)

    def cross_entropy(offset: jax.Array) -> jax.Array:
        """``-sum r log q + (1 - r) log(1 - q)``: the KL of the candidate ``coarse + offset``
        less ``sum r log r + (1 - r) log(1 - r)``, which no candidate changes."""
        start = coarse + offset + jnp.asarray(search)  # c - size // 2 in padded coordinates
        log_q_window = lax.dynamic_slice(log_q, start, size)
        log_not_q_window = lax.dynamic_slice(log_not_q, start, size)
        return -jnp.sum(r * log_q_window + (1.0 - r) * log_not_q_window)

    grids = np.meshgrid(*(np.arange(-s, s + 1) for s in search), indexing="ij")
    offsets = jnp.asarray(np.stack(grids, axis=-1).reshape(-1, 3), jnp.int32)
    return coarse + offsets[jnp.argmin(jax.vmap(cross_entropy)(offsets))]


def locate_prior(
    probs: jax.Array,
    reference: jax.Array,
    *,
    search: int | Sequence[int],
    eps: float = 1e-6,
) -> jax.Array:
    """Position of the organ in a volume: coarse centroid, then KL search (section 3.2).

    1. Coarse centre ``c0``: the probability-weighted centroid of ``probs``,
       ``sum(p(x) x) / sum(p(x))`` per axis, rounded to the nearest voxel (halves up); the
       volume centre ``shape // 2`` if ``probs`` is all zero.
    2. For every integer translation ``t`` with ``|t_a| <= search_a`` on each axis, the
       comparison window of candidate centre ``c = c0 + t`` is the window of ``reference``'s
       shape ``(Wr, Hr, Dr)`` starting at ``c - (Wr, Hr, Dr) // 2``; voxels outside the volume
       have probability 0. The cost of ``c`` is the KL divergence from the network to the
       reference, summed over the window of voxel-wise Bernoulli distributions,
       ``KL(r || q) = sum_v r log(r / q) + (1 - r) log((1 - r) / (1 - q))``, ``r`` the
       reference and ``q`` the network probabilities at the window's voxel ``v``, both clipped
       to ``[eps, 1 - eps]``.
    3. The result is the candidate of least cost; ties go to the first candidate in the
       lexicographic order of ``t`` (from ``-search``).

    All candidates are evaluated at once (``jax.vmap`` over translations); pure JAX and
    jit-able with ``reference``'s shape and ``search`` static.

    Args:
      probs: ``(X, Y, Z)`` organ probabilities of the network on the volume, in [0, 1].
      reference: ``(Wr, Hr, Dr)`` organ probabilities of a labelled reference volume (e.g. its
        one-hot label, or a placed prior) in the window centred on its own organ, in [0, 1].
      search: the largest translation tried from ``c0``, one non-negative int for all axes or
        three ints ``(sx, sy, sz)``: ``prod(2 * s + 1)`` candidates.
      eps: clipping of the probabilities, so that the logarithms stay finite.

    Returns:
      int32 ``(3,)``: the organ centre ``(x, y, z)`` in voxel indices of ``probs``.

    Raises:
      ValueError: ``probs`` or ``reference`` is not 3-D, ``search`` is malformed, or ``eps`` is
        outside ``(0, 0.5)``.
    """
    probs = _as_float(probs)
    reference = _as_float(reference)
    if probs.ndim != 3 or 0 in probs.shape:
        raise ValueError(f"probs must have shape (X, Y, Z), got {probs.shape}")
    if reference.ndim != 3 or 0 in reference.shape:
        raise ValueError(f"reference must have shape (Wr, Hr, Dr), got {reference.shape}")
    search = _positive_ints(search, "search", 3, allow_zero=True)
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
    return _locate(probs, reference, search=search, eps=float(eps))
