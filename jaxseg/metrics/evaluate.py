"""Whole-case evaluation: per-label segmentation metrics and registration inverse consistency."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from jaxseg.geometry import compose, warp
from jaxseg.metrics.overlap import (
    EmptyPolicy,
    _array_pair,
    _empty_fill,
    _overlap_scores,
    _spacing,
)
from jaxseg.metrics.surface import DISTANCE_METRICS, _surface_scores

# The metrics of each label in :func:`evaluate_case`, in order.
METRICS = ("dice", "jaccard", *DISTANCE_METRICS)


def evaluate_case(pred, ref, *, spacing, labels: Sequence[int], empty: EmptyPolicy = "nan") -> dict:
    """Dice, Jaccard, HD95, Hausdorff, ASD and ASSD of every label of one case.

    For each label ``l`` the masks are ``pred == l`` and ``ref == l``; the metrics are those of
    :mod:`jaxseg.metrics` (medpy-compatible), with the surface distances computed once per label
    and shared by the four distance metrics.

    Args:
      pred: predicted integer label map, shape ``S``.
      ref: reference label map, shape ``S``.
      spacing: voxel size along each axis (``ndim`` floats, mm), or None for voxel units.
      labels: the label values to evaluate (at least one).
      empty: value of a metric that is undefined because a mask is empty (see
        :mod:`jaxseg.metrics.overlap`): ``"nan"`` (default) or a number.

    Returns:
      A dict::

        {
          "labels": {l: {"dice": float, "jaccard": float, "hd95": float,
                         "hausdorff": float, "asd": float, "assd": float}, ...},
          "mean": {"dice": float, ...},      # arithmetic mean over ``labels``
          "empty": {"pred": [l, ...], "ref": [l, ...]},  # labels absent from pred / ref
        }

      Label keys are Python ints, in the order of ``labels``; distances are in units of
      ``spacing``. ``"mean"`` is NaN for a metric that is NaN for any label, so undefined
      values are never dropped silently; for a single label it equals that label's dict, the
      flat record of a case. ``"empty"`` lists which masks had no voxel of the label, so
      summaries can count them.

    Raises:
      ValueError: shapes differ, ``spacing`` has the wrong length, ``labels`` is empty, or
        ``empty`` is invalid.
    """
    pred, ref = _array_pair(pred, ref)
    spacing = _spacing(spacing, pred.shape)
    fill = _empty_fill(empty)
    labels = [int(label) for label in labels]
    if not labels:
        raise ValueError("labels must name at least one label value")
    per_label = {}
    empty_masks: dict[str, list[int]] = {"pred": [], "ref": []}
    for label in labels:
        a, b = pred == label, ref == label
        for key, mask in (("pred", a), ("ref", b)):
            if not mask.any():
                empty_masks[key].append(label)
        per_label[label] = {
            **_overlap_scores(a, b, fill),
            **_surface_scores(a, b, spacing, fill, DISTANCE_METRICS),
        }
    mean = {
        name: float(np.mean([scores[name] for scores in per_label.values()])) for name in METRICS
    }
    return {"labels": per_label, "mean": mean, "empty": empty_masks}


def inverse_consistency(fwd, inv, mask, *, spacing=None) -> dict[str, float]:
    """Inverse consistency of a pair of transforms (Atlas-ISTN, Sinclair et al. 2022, sec. 3.2).

    A displacement field ``u`` of shape ``(*S, N)`` is in voxel units (component ``i`` moves
    along spatial axis ``i``) and defines the transform ``phi(x) = x + u(x)``. ``inv`` should
    be the inverse of ``fwd``. The round-trip residual ``r`` is the displacement of
    ``phi_fwd o phi_inv`` (``x -> phi_fwd(phi_inv(x))``), computed with
    :func:`jaxseg.geometry.compose` as ``compose(fwd, inv)``; it is zero for exact inverses.

    * ``mice``: mean inverse-consistency error, the mean over foreground voxels ``x`` of
      ``mask`` (label > 0) of the Euclidean norm ``sqrt(sum_i (r_i(x) * spacing_i) ** 2)``,
      in mm when ``spacing`` is given, in voxels otherwise.
    * ``ic_dice``: the label map warped through the round trip, ``L(x + r(x))`` with
      nearest-neighbour interpolation (:func:`jaxseg.geometry.warp`, ``order=0``, border
      mode), compared with ``L``: the Dice of ``L == l`` and the warped ``== l``, averaged
      over the foreground labels ``l`` present in ``mask``.

    Both are NaN when ``mask`` has no foreground.

    Args:
      fwd: forward displacement field, shape ``(*S, N)`` with ``N = len(S)``, voxels.
      inv: its (approximate) inverse, shape ``(*S, N)``, voxels.
      mask: binary mask or integer label map, shape ``S``.
      spacing: voxel size along each axis (``N`` floats, mm), or None for voxel units.

    Returns:
      ``{"mice": float, "ic_dice": float}``.

    Raises:
      ValueError: a field's shape is not ``(*mask.shape, mask.ndim)``, or ``spacing`` has the
        wrong length.
    """
    mask = np.asarray(mask)
    expected = (*mask.shape, mask.ndim)
    for name, field in (("fwd", fwd), ("inv", inv)):
        if tuple(np.shape(field)) != expected:
            raise ValueError(
                f"{name} must have shape {expected} (mask shape + (ndim,)), "
                f"got {tuple(np.shape(field))}"
            )
    spacing = _spacing(spacing, mask.shape)
    foreground = mask > 0
    if not foreground.any():
        return {"mice": math.nan, "ic_dice": math.nan}
    residual = compose(fwd, inv)
    norms = np.sqrt(np.sum((np.asarray(residual, np.float64) * spacing) ** 2, axis=-1))
    warped = np.asarray(warp(mask.astype(np.int32), residual, order=0))
    scores = [
        _overlap_scores(mask == label, warped == label, math.nan)["dice"]
        for label in np.unique(mask[foreground])
    ]
    return {"mice": float(norms[foreground].mean()), "ic_dice": float(np.mean(scores))}
