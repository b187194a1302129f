"""Host-side preprocessing in numpy: intensity normalisation, resampling, one-hot labels.

Resampling keeps geometry consistent: the returned case's spacing and affine describe where its
voxels are, so ``affine_new @ [j, 1]`` is the world position that was sampled from the input for
output voxel ``j``. Images are interpolated (linear by default), labels with nearest neighbour.
Voxel grids are edge-aligned: output voxel ``j`` samples the input at continuous index
``(j + 0.5) * r - 0.5`` along each axis, where ``r`` is the ratio of new to old spacing, so the
first voxel's outer edge stays in place (``scipy.ndimage.zoom(..., grid_mode=True)`` when the
shapes divide evenly). No anti-aliasing filter is applied when downsampling.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from jaxseg.data.case import Case

__all__ = [
    "clip_and_zscore",
    "one_hot",
    "resample_onto",
    "resample_to_shape",
    "resample_to_spacing",
    "zscore",
]

STIPPLE_CT_WINDOW = (-160.0, 300.0)
"""Hounsfield window of STIPPLE's pancreas CT preprocessing."""


def zscore(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    per_channel: bool = False,
    eps: float = 1e-8,
) -> np.ndarray:
    """``(image - mean) / std`` as float32 (the MR normalisation of the LA papers).

    Args:
      image: any array; with ``per_channel`` a channels-last ``(*S, C)`` image.
      mask: optional boolean array selecting the voxels the statistics are taken over (e.g. the
        body), of the image's shape or of its spatial shape ``(*S)`` (then shared by all
        channels). Every voxel is normalised, inside the mask or not.
      per_channel: statistics per channel (last axis) instead of over the whole array.
      eps: a constant image (std below ``eps``) is only centred, never divided by ~0.

    Raises:
      ValueError: if the mask has the wrong shape or selects no voxel.
    """
    image = np.asarray(image, dtype=np.float32)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape == image.shape[:-1] and image.ndim > 0:
            mask = np.broadcast_to(mask[..., None], image.shape)
        if mask.shape != image.shape:
            raise ValueError(
                f"mask shape {mask.shape} must equal the image shape {image.shape} or its "
                f"spatial shape {image.shape[:-1]}"
            )
    if per_channel:
        channels = [
            zscore(image[..., c], None if mask is None else mask[..., c], eps=eps)
            for c in range(image.shape[-1])
        ]
        return np.stack(channels, axis=-1)
    values = image.astype(np.float64) if mask is None else image[mask].astype(np.float64)
    if values.size == 0:
        raise ValueError("zscore: no voxel to take statistics over (empty image or mask)")
    mean, std = values.mean(), values.std()
    return ((image - mean) / (std if std > eps else 1.0)).astype(np.float32)


def clip_and_zscore(
    image: np.ndarray,
    *,
    window: tuple[float, float] = STIPPLE_CT_WINDOW,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Clip CT intensities to ``window`` (HU) and z-score the result, as float32.

    The default window [-160, 300] HU is STIPPLE's abdominal (pancreas) window. Statistics are
    those of the clipped volume (within ``mask`` when given, see :func:`zscore`).
    """
    lo, hi = (float(w) for w in window)
    if not lo < hi:
        raise ValueError(f"window must be (low, high) with low < high, got {window}")
    return zscore(np.clip(np.asarray(image, dtype=np.float32), lo, hi), mask)


def _sample(volume: np.ndarray, ratio: np.ndarray, shape: tuple[int, ...], order: int, dtype):
    """``volume`` sampled at input index ``(j + 0.5) * ratio - 0.5`` for ``j`` in ``shape``."""
    return ndimage.affine_transform(
        volume, ratio, offset=0.5 * ratio - 0.5, output_shape=shape, order=order,
        mode="nearest", output=dtype,
    )  # fmt: skip


def _sample_channels(
    volume: np.ndarray, ratio: np.ndarray, shape: tuple[int, ...], order: int
) -> np.ndarray:
    """:func:`_sample` of every channel of a channels-last ``volume``, float32."""
    channels = [_sample(volume[..., c], ratio, shape, order, np.float32)
                for c in range(volume.shape[-1])]  # fmt: skip
    return np.stack(channels, axis=-1)


def _resample(case: Case, shape: Sequence[int], ratio: np.ndarray, order: int) -> Case:
    """Sample ``case`` at input index ``(j + 0.5) * ratio - 0.5`` for ``j`` in ``shape``."""
    shape = tuple(int(n) for n in shape)
    image = _sample_channels(case.image, ratio, shape, order)
    label = None if case.label is None else _sample(case.label, ratio, shape, 0, np.int32)
    ndim = len(shape)
    step = np.eye(ndim + 1)
    step[:ndim, :ndim] = np.diag(ratio)
    step[:ndim, ndim] = 0.5 * ratio - 0.5
    return dataclasses.replace(
        case,
        image=image,
        label=label,
        spacing=tuple(float(s) * float(r) for s, r in zip(case.spacing, ratio)),
        affine=case.affine @ step,
    )


def resample_onto(
    volume: np.ndarray, spacing: Sequence[float], case: Case, *, order: int = 1
) -> np.ndarray:
    """Bring a channels-last ``volume`` ``(*S', C)`` on the grid that
    ``resample_to_spacing(case, spacing)`` gives back onto ``case``'s own grid ``(*S, C)``.

    The exact inverse of that grid map (voxel ``i`` of the case samples ``volume`` at index
    ``(i + 0.5) / r - 0.5``, ``r = spacing / case.spacing``), so every voxel keeps its world
    position; used to score or save at the case's resolution what a network predicted at
    ``spacing``. Spline ``order`` 1 (linear) suits probabilities, 0 labels; float32 output.
    """
    _check_order(order)
    ratio = np.asarray(case.spacing, dtype=float) / np.asarray(spacing, dtype=float)
    shape = tuple(int(n) for n in case.spatial_shape)
    volume = np.asarray(volume)
    if volume.ndim != len(shape) + 1 or ratio.shape != (len(shape),):
        raise ValueError(
            f"volume {volume.shape} must be channels-last with {len(shape)} spatial axes and "
            f"spacing {tuple(spacing)} one value per axis"
        )
    return _sample_channels(volume, ratio, shape, order)


def _check_order(order: int) -> None:
    if order not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"order must be a spline order in 0..5, got {order}")


def resample_to_spacing(case: Case, spacing: Sequence[float], *, order: int = 1) -> Case:
    """Resample a case to the given voxel spacing (mm).

    The new shape is ``round(shape * old_spacing / spacing)`` (at least 1 per axis) and the
    returned spacing is exactly ``spacing``; the field of view changes by less than one new
    voxel. The image is interpolated with spline ``order`` (1: linear), the label with nearest
    neighbour; the affine is updated so every voxel keeps its world position.
    """
    _check_order(order)
    old = np.asarray(case.spacing, dtype=float)
    new = np.asarray(spacing, dtype=float)
    if new.shape != old.shape or not np.all(np.isfinite(new) & (new > 0)):
        raise ValueError(f"spacing must be {old.size} positive numbers, got {spacing}")
    shape = [max(1, math.floor(n * o / s + 0.5)) for n, o, s in zip(case.spatial_shape, old, new)]
    return _resample(case, shape, new / old, order)


def resample_to_shape(case: Case, shape: Sequence[int], *, order: int = 1) -> Case:
    """Resample a case to the given spatial shape, keeping its field of view.

    Used by Atlas-ISTN (128^3 for CT, 64 x 64 for letter B). The spacing becomes
    ``old_spacing * old_shape / shape`` and the affine is updated accordingly; the image is
    interpolated with spline ``order``, the label with nearest neighbour. Equivalent to
    ``scipy.ndimage.zoom(..., grid_mode=True, mode="nearest")``.
    """
    _check_order(order)
    shape = tuple(int(n) for n in shape)
    if len(shape) != len(case.spatial_shape) or min(shape) < 1:
        raise ValueError(
            f"shape must be {len(case.spatial_shape)} positive sizes, got {tuple(shape)}"
        )
    ratio = np.asarray(case.spatial_shape, dtype=float) / np.asarray(shape, dtype=float)
    return _resample(case, shape, ratio, order)


def one_hot(label: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot encoding ``(*S) -> (*S, K)`` float32 of an integer label map.

    Raises:
      ValueError: if the label is not integer-valued or has values outside ``range(K)``.
    """
    label = np.asarray(label)
    if not (np.issubdtype(label.dtype, np.integer) or label.dtype == bool):
        raise ValueError(f"label must be an integer array, got dtype {label.dtype}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise ValueError(
            f"label values in [{label.min()}, {label.max()}] outside range({num_classes})"
        )
    return (label[..., None] == np.arange(num_classes)).astype(np.float32)
