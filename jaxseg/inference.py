"""Sliding-window prediction of a whole volume with a network trained on patches.

The procedure is the test procedure of the LA papers (the ``test_single_case`` of the UA-MT,
SASSNet and DTML code), for ``N`` spatial axes and any per-voxel output:

1. Every spatial axis shorter than the patch is padded with zeros to the patch size, the first
   ``(patch - n) // 2`` voxels before the volume and the rest after it.
2. Along an axis of (padded) size ``n`` there are ``ceil((n - patch) / stride) + 1`` windows and
   window ``i`` starts at ``min(stride * i, n - patch)``: windows step by ``stride`` and the last
   one is moved back so that it ends flush with the volume (:func:`window_starts`). The windows of
   the volume are all combinations of the per-axis starts.
3. The network is run on every window; its outputs are summed into a map of the padded volume
   together with the number of windows covering each voxel (``blend="mean"``), or with weights
   that fall off from the centre of the patch (``blend="gaussian"``).
4. The sum is divided by the count (or by the summed weights) and the padding is cropped away.

With ``patch=(112, 112, 80)`` and ``stride=(18, 18, 4)`` this is the LA papers' evaluation; the
same placement rule is used whatever the stride.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["sliding_window", "window_starts"]

_BLENDS = ("mean", "gaussian")


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start indices of the sliding windows along one axis, by the LA papers' rule.

    There are ``ceil((size - patch) / stride) + 1`` windows and window ``i`` starts at
    ``min(stride * i, size - patch)``: the starts step by ``stride`` from 0 and the last window
    ends flush with the axis (it may overlap its predecessor by more than the others do). For
    ``size == patch`` there is one window at 0.

    Args:
      size: length of the axis, at least ``patch`` (:func:`sliding_window` pads shorter axes to
        ``patch`` first).
      patch: window length, positive.
      stride: step between windows, positive. With ``stride <= patch`` the windows cover the axis.

    Returns:
      The increasing start indices, Python ints.

    Raises:
      ValueError: if ``patch`` or ``stride`` is not positive, or ``size < patch``.
    """
    size, patch, stride = _as_int(size, "size"), _as_int(patch, "patch"), _as_int(stride, "stride")
    if patch <= 0 or stride <= 0:
        raise ValueError(f"patch and stride must be positive, got patch={patch}, stride={stride}")
    if size < patch:
        raise ValueError(f"size must be at least patch={patch} (pad the axis first), got {size}")
    count = math.ceil((size - patch) / stride) + 1
    return [min(stride * i, size - patch) for i in range(count)]


def sliding_window(
    predict_fn: Callable[[jax.Array], jax.Array],
    volume: jax.Array,
    *,
    patch: Sequence[int],
    stride: int | Sequence[int] | None = None,
    batch_size: int = 1,
    blend: str = "mean",
) -> jax.Array:
    """Per-voxel outputs of ``predict_fn`` on a whole volume, averaged over overlapping windows.

    Windows are placed as in the LA papers' test procedure (see the module docstring): axes
    shorter than ``patch`` are zero-padded half before and half after, window starts along an
    axis are :func:`window_starts` of the padded size, the outputs are averaged where windows
    overlap and the padding is cropped away.

    The function is pure JAX and can be jitted for a given volume shape (the window positions are
    Python ints computed from the static shapes; bind ``predict_fn`` and the keyword options with
    ``functools.partial``). Windows are processed ``batch_size`` at a time in a ``lax.scan`` that
    extracts them with ``lax.dynamic_slice`` and adds each output into a running sum of the padded
    volume's size; only one batch of patch outputs is alive at a time. When ``batch_size`` does
    not divide the number of windows, the last batch is filled up with repeats of the last window
    whose contributions get weight 0.

    Args:
      predict_fn: maps a batch of patches ``(B, *patch, C)`` (the dtype of ``volume``) to per-voxel
        outputs ``(B, *patch, K)``, e.g. the sigmoid or softmax of a segmentation network closed
        over its variables. It must be JAX-traceable; it is called with ``B = min(batch_size,
        number of windows)``.
      volume: one case, channels last, ``(*S, C)`` with ``len(S) == len(patch)``.
      patch: spatial patch size ``(P_1, ..., P_N)``, positive ints.
      stride: spatial step between windows, an int for every axis or ``(T_1, ..., T_N)``, each
        in ``[1, P_i]``. Default: half the patch, ``max(P_i // 2, 1)`` (nnU-Net's step of 0.5). The
        LA papers use ``patch=(112, 112, 80)``, ``stride=(18, 18, 4)``.
      batch_size: number of windows per call of ``predict_fn``, positive.
      blend: how overlapping windows combine. ``"mean"``: the uniform average over the windows
        covering a voxel (the reference procedure). ``"gaussian"``: the average weighted by a
        Gaussian importance map centred in the patch (at ``(P_i - 1) / 2``, exactly the middle)
        with ``sigma_i = P_i / 8``, separable and scaled to 1 at the centre, as in nnU-Net and
        MONAI; its smallest value, in a corner, is above ``exp(-8 N)``, so every voxel keeps a
        positive weight.

    Returns:
      ``(*S, K)``: the weighted average of the window outputs at every voxel, in the dtype of
      ``predict_fn``'s output promoted to at least float32 (the accumulation dtype).

    Raises:
      ValueError: if ``volume`` is not ``(*S, C)`` with ``len(S) == len(patch)``, ``patch`` or
        ``stride`` has the wrong length or a value out of range, ``batch_size`` is not positive,
        ``blend`` is unknown, or ``predict_fn`` does not return ``(B, *patch, K)``.
    """
    volume = jnp.asarray(volume)
    patch = _as_tuple(patch, "patch")
    ndim = len(patch)
    if ndim == 0:
        raise ValueError("patch must name at least one spatial axis, got ()")
    if volume.ndim != ndim + 1:
        raise ValueError(
            f"volume must be (*S, C) with {ndim} spatial axes (len(patch) == {ndim}), so of rank "
            f"{ndim + 1}; got shape {volume.shape}"
        )
    if any(p <= 0 for p in patch):
        raise ValueError(f"patch must be positive, got {patch}")
    if stride is None:
        stride = tuple(max(p // 2, 1) for p in patch)
    elif isinstance(stride, int | np.integer):
        stride = (int(stride),) * ndim
    else:
        stride = _as_tuple(stride, "stride")
    if len(stride) != ndim:
        raise ValueError(
            f"stride must have one value per spatial axis, {ndim} like patch={patch}, got {stride}"
        )
    if any(not 1 <= t <= p for t, p in zip(stride, patch)):
        raise ValueError(
            f"stride must lie in [1, patch] on every axis (a larger step leaves voxels uncovered); "
            f"got stride={stride} for patch={patch}"
        )
    batch_size = _as_int(batch_size, "batch_size")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if blend not in _BLENDS:
        raise ValueError(f"blend must be one of {_BLENDS}, got {blend!r}")

    shape = volume.shape[:ndim]
    channels = volume.shape[ndim]
    pad_lo = tuple(max(p - n, 0) // 2 for n, p in zip(shape, patch))
    pad_hi = tuple(max(p - n, 0) - lo for n, p, lo in zip(shape, patch, pad_lo))
    padded = jnp.pad(volume, [*zip(pad_lo, pad_hi), (0, 0)])
    padded_shape = padded.shape[:ndim]

    # Static window placement: the cartesian product of the per-axis starts, first axis slowest
    # (the reference's loop order), then filled up to whole batches with the last window.
    axis_starts = [window_starts(n, p, t) for n, p, t in zip(padded_shape, patch, stride)]
    starts = np.stack(np.meshgrid(*axis_starts, indexing="ij"), axis=-1).reshape(-1, ndim)
    num_windows = starts.shape[0]
    batch = min(batch_size, num_windows)
    num_batches = -(-num_windows // batch)
    fill = num_batches * batch - num_windows
    starts = np.concatenate([starts, np.repeat(starts[-1:], fill, axis=0)])
    starts = starts.reshape(num_batches, batch, ndim).astype(np.int32)
    valid = (np.arange(num_batches * batch) < num_windows).reshape(num_batches, batch)

    out_struct = jax.eval_shape(
        predict_fn, jax.ShapeDtypeStruct((batch, *patch, channels), padded.dtype)
    )
    if (
        not hasattr(out_struct, "shape")
        or len(out_struct.shape) != ndim + 2
        or tuple(out_struct.shape[: ndim + 1]) != (batch, *patch)
    ):
        got = getattr(out_struct, "shape", type(out_struct).__name__)
        raise ValueError(
            f"predict_fn must map ({batch}, *{patch}, {channels}) to ({batch}, *{patch}, K); "
            f"got {got}"
        )
    classes = out_struct.shape[-1]
    dtype = jnp.promote_types(out_struct.dtype, jnp.float32)

    # Per-axis weight profiles: the weight map and its sum over the windows are separable, so the
    # normaliser is an outer product of 1-D sums and no array of the volume's size is a constant.
    profiles = [_profile(p, blend) for p in patch]
    weight = None
    if blend != "mean":
        weight = _outer([jnp.asarray(w, dtype) for w in profiles])[..., None]
    normaliser = []
    for n, p, s, w, lo in zip(shape, patch, axis_starts, profiles, pad_lo):
        total = np.zeros(max(n, p))
        for start in s:
            total[start : start + p] += w
        normaliser.append(jnp.asarray(total[lo : lo + n], dtype))

    def body(acc, xs):
        batch_starts, batch_valid = xs
        patches = jax.vmap(
            lambda start: lax.dynamic_slice(padded, (*start, np.int32(0)), (*patch, channels))
        )(batch_starts)
        out = predict_fn(patches).astype(dtype)
        if weight is not None:
            out = out * weight[None]

        def add(b, acc):
            index = (*batch_starts[b], np.int32(0))  # int32 like the starts, also under x64
            window = lax.dynamic_index_in_dim(out, b, keepdims=False)
            window = jnp.where(batch_valid[b], window, jnp.zeros_like(window))
            current = lax.dynamic_slice(acc, index, (*patch, classes))
            return lax.dynamic_update_slice(acc, current + window, index)

        return lax.fori_loop(0, batch, add, acc), None

    acc = jnp.zeros((*padded_shape, classes), dtype)
    acc, _ = lax.scan(body, acc, (jnp.asarray(starts), jnp.asarray(valid)))
    acc = acc[tuple(slice(lo, lo + n) for lo, n in zip(pad_lo, shape))]
    return acc / _outer(normaliser)[..., None]


def _profile(patch: int, blend: str) -> np.ndarray:
    """1-D weights along one patch axis: ones, or the Gaussian of the module docstring."""
    if blend == "mean":
        return np.ones(patch)
    centre, sigma = (patch - 1) / 2, patch / 8
    return np.exp(-0.5 * ((np.arange(patch) - centre) / sigma) ** 2)


def _outer(vectors: Sequence[jax.Array]) -> jax.Array:
    """Outer product of 1-D arrays, ``(len(v_1), ..., len(v_N))``, without rank promotion."""
    ndim = len(vectors)
    result = None
    for axis, v in enumerate(vectors):
        v = v.reshape(tuple(-1 if a == axis else 1 for a in range(ndim)))
        result = v if result is None else result * v
    return result


def _as_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return int(value)


def _as_tuple(values, name: str) -> tuple[int, ...]:
    if isinstance(values, int | np.integer) or not isinstance(values, Sequence | np.ndarray):
        raise ValueError(f"{name} must be a sequence of ints, one per spatial axis, got {values!r}")
    return tuple(_as_int(v, name) for v in values)
