"""Volume-overlap metrics (Dice, Jaccard) and the input conventions shared by all metrics.

Every metric takes two masks ``pred`` and ``ref`` of the same shape ``S`` (numpy or JAX arrays
of any dtype; non-zero is foreground, as in ``medpy.metric.binary``) and returns a Python float.

Empty masks never raise. The ``empty`` keyword says what a metric returns when it is undefined:

* ``empty="nan"`` (default): ``nan``;
* ``empty=<number>``: that number, e.g. ``1.0`` for Dice of two empty masks (medpy's ``dc``
  and ``jc`` return 1.0 there) or a distance penalty in mm for the surface metrics.

Any other value raises ``ValueError``, whether or not a mask is empty.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

EmptyPolicy = str | float


def _array_pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``ref`` as numpy arrays (at least 1-D, as in medpy) of one shape."""
    pred = np.atleast_1d(np.asarray(pred))
    ref = np.atleast_1d(np.asarray(ref))
    if pred.shape != ref.shape:
        raise ValueError(
            f"pred and ref must have the same shape, got pred {pred.shape} and ref {ref.shape}"
        )
    return pred, ref


def _binary_pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``ref`` as boolean arrays of one shape; non-zero is foreground."""
    pred, ref = _array_pair(pred, ref)
    return (pred if pred.dtype == bool else pred != 0), (ref if ref.dtype == bool else ref != 0)


def _spacing(spacing, shape: tuple[int, ...]) -> np.ndarray:
    """``spacing`` (one positive float per axis; None = 1) as a float64 array ``(ndim,)``."""
    if spacing is None:
        return np.ones(len(shape))
    values = np.asarray(spacing, dtype=np.float64)
    if values.shape != (len(shape),):
        raise ValueError(
            f"spacing must have one entry per axis of masks of shape {shape}, i.e. shape "
            f"({len(shape)},), got {spacing!r}"
        )
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    return values


def _empty_fill(empty: EmptyPolicy) -> float:
    """The value a metric returns when it is undefined under the policy ``empty``."""
    if isinstance(empty, numbers.Real) and not isinstance(empty, bool):
        return float(empty)
    if empty == "nan":
        return math.nan
    raise ValueError(f"empty must be 'nan' or a number, got {empty!r}")


def _overlap_scores(a: np.ndarray, b: np.ndarray, fill: float) -> dict[str, float]:
    """Dice and Jaccard of boolean masks ``a`` and ``b``; ``fill`` when both are empty."""
    inter = int(np.count_nonzero(a & b))
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return {"dice": fill, "jaccard": fill}
    return {"dice": 2.0 * inter / float(total), "jaccard": float(inter) / float(total - inter)}


def dice(pred, ref, *, spacing=None, empty: EmptyPolicy = "nan") -> float:
    """Dice coefficient ``2 |P ∩ R| / (|P| + |R|)`` of two masks of shape ``S``.

    Equal to ``medpy.metric.binary.dc``. Ranges from 0 (no overlap) to 1 (identical masks).

    Args:
      pred: predicted mask, shape ``S``; non-zero is foreground.
      ref: reference mask, shape ``S``.
      spacing: one voxel size per axis (mm). Dice does not depend on it; it is accepted so that
        all metrics share one signature, and validated like theirs.
      empty: value when both masks are empty (Dice is 0/0 there): ``"nan"`` or a number.
        When exactly one mask is empty the Dice is 0.0, whatever the policy.

    Returns:
      The Dice coefficient as a Python float.

    Raises:
      ValueError: shapes differ, ``spacing`` has the wrong length, or ``empty`` is invalid.
    """
    a, b = _binary_pair(pred, ref)
    _spacing(spacing, a.shape)
    return _overlap_scores(a, b, _empty_fill(empty))["dice"]


def jaccard(pred, ref, *, spacing=None, empty: EmptyPolicy = "nan") -> float:
    """Jaccard index (IoU) ``|P ∩ R| / |P ∪ R|`` of two masks of shape ``S``.

    Equal to ``medpy.metric.binary.jc``; ``jaccard = dice / (2 - dice)``.

    Args:
      pred: predicted mask, shape ``S``; non-zero is foreground.
      ref: reference mask, shape ``S``.
      spacing: accepted for a uniform signature and validated; does not affect the value.
      empty: value when both masks are empty: ``"nan"`` or a number. When exactly one mask is
        empty the index is 0.0, whatever the policy.

    Returns:
      The Jaccard index as a Python float.

    Raises:
      ValueError: shapes differ, ``spacing`` has the wrong length, or ``empty`` is invalid.
    """
    a, b = _binary_pair(pred, ref)
    _spacing(spacing, a.shape)
    return _overlap_scores(a, b, _empty_fill(empty))["jaccard"]
