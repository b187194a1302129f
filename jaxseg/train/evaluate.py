"""Whole-volume evaluation of a trained network: predictions, metrics, ``metrics.json``, figures.

The procedure is the LA papers' test procedure, generic over methods and data sets:

1. :func:`predict_volume` runs a network on a whole case with
   :func:`jaxseg.inference.sliding_window`, jitted once per volume shape with the network's
   variables as an argument (not a baked-in constant).
2. :func:`probabilities_to_labels` turns the per-voxel outputs ``(*S, K)`` into a label map:
   ``prob > threshold`` for one channel, ``argmax`` for several; optionally only the largest
   connected component of each label is kept (the papers' "NMS").
3. :func:`evaluate` computes the medpy-compatible metrics of :func:`jaxseg.metrics.evaluate_case`
   for every foreground label, in mm (the case's spacing) and in voxels, summarises them over
   the cases and, given a directory, writes ``metrics.json`` (atomically) and figures.

Layout of the result (and of ``metrics.json``, where NaN is written as ``null``)::

    {"cases": [{"id": str, "dice": float, "jaccard": float, "hd95": float, "asd": float,
                "assd": float, "hausdorff": float, "hd95_voxels": float, "asd_voxels": float,
                "assd_voxels": float, "hausdorff_voxels": float,
                "labels": {"1": {...the same keys...}, ...}}, ...],
     "mean": {metric: float}, "std": {metric: float},
     "empty": {"pred": [case ids], "ref": [case ids]},
     "num_cases": int,
     "protocol": {"patch": [...], "stride": [...], "blend": str, "threshold": float,
                  "largest_component": bool, "empty": "nan" | float,
                  "units": "mm (voxels for *_voxels)"}}
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxseg import viz
from jaxseg.data.preprocess import resample_onto, resample_to_spacing
from jaxseg.inference import sliding_window
from jaxseg.metrics import METRICS, evaluate_case
from jaxseg.metrics import largest_component as _largest_component
from jaxseg.train.logging import write_json_atomic

__all__ = [
    "OutputFn",
    "case_record",
    "evaluate",
    "predict_on_grid",
    "predict_volume",
    "probabilities_to_labels",
    "window_options",
]

# The distance metrics, which are also reported in voxels as ``<name>_voxels``.
_DISTANCES = tuple(name for name in METRICS if name not in ("dice", "jaccard"))
# The keys of a case record and of a label record, in order.
_CASE_METRICS = (*METRICS, *(f"{name}_voxels" for name in _DISTANCES))
_UNITS = "mm (voxels for *_voxels)"


# ---------------------------------------------------------------------------------------------
# Prediction


@functools.lru_cache(maxsize=32)
def _jitted_sliding_window(
    apply_fn: Callable, patch, stride, batch_size, blend: str
) -> Callable[[Any, jax.Array], jax.Array]:
    """One jitted ``(variables, image) -> (*S, K)`` per function and window options.

    ``jax.jit`` then keeps one compilation per volume shape/dtype and variables structure.
    """

    def run(variables, image):
        return sliding_window(
            functools.partial(apply_fn, variables),
            image,
            patch=patch,
            stride=stride,
            batch_size=batch_size,
            blend=blend,
        )

    return jax.jit(run)


def _hashable(value):
    """Lists and arrays of window options as tuples, so that they can key the cache."""
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def predict_volume(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    variables: Any,
    image,
    *,
    patch: Sequence[int],
    stride: int | Sequence[int] | None,
    batch_size: int = 1,
    blend: str = "mean",
) -> np.ndarray:
    """Per-voxel outputs of a network on one whole volume, by sliding windows.

    The volume is cut into windows placed as in the LA papers' test procedure (see
    :func:`jaxseg.inference.sliding_window`), ``apply_fn(variables, patches)`` is run on them
    and the outputs are averaged where windows overlap.

    The whole procedure is jitted with ``variables`` and ``image`` as arguments: it compiles once
    per ``(apply_fn, patch, stride, batch_size, blend)``, volume shape and dtype, and structure
    (tree, shapes, dtypes) of ``variables``; new values of the variables (e.g. after more
    training) reuse the compilation. Pass the same ``apply_fn`` object each time (a fresh lambda
    or ``functools.partial`` per call compiles again).

    Args:
      apply_fn: pure JAX function ``apply_fn(variables, patches (B, *P, C)) -> (B, *P, K)``,
        e.g. the sigmoid or softmax of a network's logits, in eval mode.
      variables: pytree of arrays given to ``apply_fn`` (e.g. ``{"params": ...}``).
      image: one case, channels last, ``(*S, C)`` with ``len(S) == len(patch)``.
      patch: spatial window size ``(P_1, ..., P_N)``.
      stride: step between windows, an int, one per axis, or None for half the patch.
      batch_size: windows per call of ``apply_fn``.
      blend: ``"mean"`` (the reference procedure) or ``"gaussian"``.

    Returns:
      numpy array ``(*S, K)`` (at least float32) of the averaged outputs.

    Raises:
      ValueError: from :func:`jaxseg.inference.sliding_window`, for a volume of the wrong rank,
        an invalid patch, stride, batch size or blend, or outputs of the wrong shape.
    """
    jitted = _jitted_sliding_window(
        apply_fn, _hashable(patch), _hashable(stride), batch_size, blend
    )
    return np.asarray(jitted(variables, np.asarray(image)))


def predict_on_grid(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    variables: Any,
    case: Any,
    spacing: Sequence[float] | None,
    **window: Any,
) -> np.ndarray:
    """:func:`predict_volume` of ``case.image`` with the network working at ``spacing`` (mm):
    a case of another spacing is resampled to it (image linear) and the outputs are brought
    back onto the case's own grid (:func:`jaxseg.data.preprocess.resample_onto`, linear), so
    that every voxel keeps its world position. ``spacing`` None: the case's own grid."""
    if spacing is None or np.allclose(case.spacing, spacing, rtol=1e-6, atol=0.0):
        return predict_volume(apply_fn, variables, case.image, **window)
    net_case = resample_to_spacing(dataclasses.replace(case, label=None), spacing)
    return resample_onto(
        predict_volume(apply_fn, variables, net_case.image, **window), spacing, case
    )


class OutputFn:
    """``apply_fn(variables, patches) -> predict(config, variables, patches)[output]`` for
    :func:`predict_volume`, equal (and hashing equal) to any other with the same ``predict``,
    config values and ``output``: the sliding window compiles once per such function, not once
    per call that builds it (e.g. once per case of a folder)."""

    def __init__(self, predict: Callable, config: Any, output: str = "prob"):
        self.predict, self.config, self.output = predict, config, output
        self._key = (predict, config.to_json_best_effort(sort_keys=True), output)

    def __call__(self, variables: Any, patches: jax.Array) -> jax.Array:
        return self.predict(self.config, variables, patches)[self.output]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputFn) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)


def window_options(config: Any) -> dict[str, Any]:
    """The sliding-window keywords of :func:`predict_volume` from a config's ``eval`` section
    (``patch``, ``stride``, ``batch_size``, ``blend``)."""
    e = config.eval
    return {
        "patch": tuple(e.patch),
        "stride": tuple(e.stride),
        "batch_size": int(e.batch_size),
        "blend": str(e.get("blend", "mean")),
    }


def probabilities_to_labels(
    prob, *, threshold: float = 0.5, largest_component: bool = False
) -> np.ndarray:
    """Label map of per-voxel outputs: threshold one channel or take the argmax of several.

    With one channel (``K == 1``, a sigmoid output) a voxel is foreground, label 1, where
    ``prob[..., 0] > threshold``, strictly greater as in the LA reference code. With ``K > 1``
    channels (a softmax output, channel 0 the background) the label is the argmax over the
    channels, the first channel on a tie. ``threshold`` is ignored then.

    With ``largest_component=True`` only the largest connected component (full connectivity,
    :func:`jaxseg.metrics.largest_component`) of each foreground label is kept; the voxels of
    its other components become background (0). This is the papers' "NMS" post-processing.

    Args:
      prob: per-voxel outputs ``(*S, K)``, numpy or JAX.
      threshold: foreground threshold for ``K == 1``.
      largest_component: keep only the largest component of each foreground label.

    Returns:
      int32 label map ``(*S)`` with values in ``0..max(K - 1, 1)``.

    Raises:
      ValueError: if ``prob`` is not ``(*S, K)`` with at least one spatial axis and ``K >= 1``,
        or ``threshold`` is not a finite number.
    """
    prob = np.asarray(prob)
    if prob.ndim < 2 or prob.shape[-1] < 1:
        raise ValueError(
            f"prob must be (*S, K) with at least one spatial axis and K >= 1, got {prob.shape}"
        )
    _check_threshold(threshold)
    if prob.shape[-1] == 1:
        labels = (prob[..., 0] > threshold).astype(np.int32)
    else:
        labels = np.argmax(prob, axis=-1).astype(np.int32)
    if largest_component:
        for label in range(1, max(prob.shape[-1], 2)):
            mask = labels == label
            if mask.any():
                labels[mask & ~_largest_component(mask)] = 0
    return labels


def _check_threshold(threshold) -> None:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not math.isfinite(threshold)
    ):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    variables: Any,
    cases: Iterable,
    *,
    patch: Sequence[int],
    stride: int | Sequence[int] | None,
    batch_size: int = 1,
    blend: str = "mean",
    threshold: float = 0.5,
    largest_component: bool = False,
    empty: str | float = "nan",
    out_dir: str | os.PathLike | None = None,
    num_figures: int = 4,
    progress: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
    spacing: Sequence[float] | None = None,
) -> dict:
    """Evaluate a network on labelled whole volumes, as in the papers' test procedure.

    Every case is predicted with :func:`predict_volume`, turned into a label map with
    :func:`probabilities_to_labels` and compared with its label by
    :func:`jaxseg.metrics.evaluate_case` (medpy-compatible Dice, Jaccard, HD95, Hausdorff, ASD,
    ASSD), once with the case's spacing (mm) and once in voxels (the ``*_voxels`` keys; Dice and
    Jaccard do not depend on the spacing). The labels evaluated are the foreground labels the
    network can predict, ``1..max(K, 2) - 1`` for ``K`` output channels, and any other label of
    the reference. The case's top-level metrics are the mean over these labels (those of label
    1 in the binary case), NaN where any label's value is NaN.

    A metric that is undefined because a mask is empty follows the ``empty`` policy of
    :mod:`jaxseg.metrics`: NaN (``"nan"``) or a given number. ``"mean"`` and ``"std"``
    (population standard deviation) over the cases ignore NaN values (NaN when all are NaN), and
    ``"empty"`` lists the cases with an empty prediction (``"pred"``) or reference (``"ref"``)
    of some label, so that summaries can say how many cases a mean leaves out. The layout of
    the result is in the module docstring; all numbers are Python ints and floats, and label
    keys are strings, so that it is the JSON file's content (with NaN for ``null``).

    Args:
      apply_fn: ``apply_fn(variables, patches (B, *P, C)) -> (B, *P, K)``, pure JAX (e.g. the
        sigmoid of a segmentation network's logits).
      variables: the network's variables, passed to ``apply_fn``.
      cases: :class:`jaxseg.data.case.Case` objects with labels (``id``, ``image`` ``(*S, C)``,
        ``label`` ``(*S)``, ``spacing``); any iterable, consumed once.
      patch: spatial window size, e.g. ``(112, 112, 80)`` for LA.
      stride: step between windows, e.g. ``(18, 18, 4)`` for LA; None for half the patch.
      batch_size: windows per network call.
      blend: ``"mean"`` or ``"gaussian"`` window averaging.
      threshold: foreground where the probability is strictly greater (``K == 1``).
      largest_component: keep only the largest connected component of each label ("NMS").
      empty: value of undefined metrics, ``"nan"`` or a number (e.g. a distance penalty).
      out_dir: if given, write ``out_dir/metrics.json`` and figures under ``out_dir/figures``:
        ``<id>.png`` with three axial slices (image, reference contour green, prediction contour
        red) for the first ``num_figures`` cases, and ``dice.png`` with the per-case Dice.
      num_figures: number of cases drawn, from the first.
      progress: show a tqdm bar over the cases with the running mean Dice; default: when
        stderr is a terminal.
      metadata: extra JSON-safe entries of the result (e.g. which checkpoint was evaluated),
        added before ``metrics.json`` is written.
      spacing: the voxel spacing (mm) the network works at, when the cases keep their own
        grid: a case of another spacing is resampled to it for prediction
        (:func:`jaxseg.data.preprocess.resample_to_spacing`, image linear) and the
        probabilities are brought back onto the case's grid (:func:`~jaxseg.data.preprocess.
        resample_onto`, linear) before thresholding, so that every metric is that of the
        case's own grid and label. None: the cases are on the network's grid.

    Returns:
      The result dict described in the module docstring.

    Raises:
      ValueError: if there are no cases, a case has no label (naming its id), ``threshold``,
        ``empty`` or ``num_figures`` is invalid, or (from :func:`predict_volume`) the window
        options do not fit the volumes.
    """
    _check_threshold(threshold)
    _check_empty(empty)
    if isinstance(num_figures, bool) or not isinstance(num_figures, numbers.Integral):
        raise ValueError(f"num_figures must be a non-negative int, got {num_figures!r}")
    if num_figures < 0:
        raise ValueError(f"num_figures must be a non-negative int, got {num_figures}")
    if isinstance(cases, Sequence):
        if len(cases) == 0:
            raise ValueError("cases is empty: there is nothing to evaluate")
        for case in cases:
            _check_labelled(case)
    total = len(cases) if hasattr(cases, "__len__") else None
    figures_dir = None if out_dir is None else os.path.join(os.fspath(out_dir), "figures")

    records: list[dict[str, Any]] = []
    empty_ids: dict[str, list[str]] = {"pred": [], "ref": []}
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = tqdm(cases, total=total, disable=not show, desc="evaluate", unit="case", leave=True)
    try:
        for case in bar:
            _check_labelled(case)
            ref = np.asarray(case.label)
            window = {"patch": patch, "stride": stride, "batch_size": batch_size, "blend": blend}
            prob = predict_on_grid(apply_fn, variables, case, spacing, **window)
            pred = probabilities_to_labels(
                prob, threshold=threshold, largest_component=largest_component
            )
            if pred.shape != ref.shape:
                raise ValueError(
                    f"case {case.id}: label shape {ref.shape} does not match the prediction's "
                    f"spatial shape {pred.shape}"
                )
            num_classes = max(prob.shape[-1], 2)
            labels = sorted({*range(1, num_classes), *(int(v) for v in np.unique(ref) if v > 0)})
            record, empty_masks = case_record(str(case.id), pred, ref, case.spacing, labels, empty)
            records.append(record)
            for key in ("pred", "ref"):
                if empty_masks[key]:
                    empty_ids[key].append(record["id"])
            running = nanmean([r["dice"] for r in records])
            bar.set_postfix(dice="nan" if math.isnan(running) else f"{running:.4f}")
            if figures_dir is not None and len(records) <= num_figures:
                viz.case_figure(
                    os.path.join(figures_dir, f"{_file_stem(record['id'])}.png"),
                    np.asarray(case.image)[..., 0],
                    ref,
                    pred,
                    case.spacing,
                    f"{record['id']}  Dice {_format(record['dice'])}",
                )
    finally:
        bar.close()
    if not records:
        raise ValueError("cases is empty: there is nothing to evaluate")

    result = {
        "cases": records,
        "mean": {name: nanmean([r[name] for r in records]) for name in _CASE_METRICS},
        "std": {name: nanstd([r[name] for r in records]) for name in _CASE_METRICS},
        "empty": empty_ids,
        "num_cases": len(records),
        "protocol": {
            "patch": [int(p) for p in patch],
            "stride": _resolved_stride(patch, stride),
            "blend": str(blend),
            "threshold": float(threshold),
            "largest_component": bool(largest_component),
            "empty": "nan" if isinstance(empty, str) else float(empty),
            "units": _UNITS,
            "network_spacing": None if spacing is None else [float(x) for x in spacing],
        },
    }
    result.update(metadata or {})
    if out_dir is not None:
        viz.dice_figure(os.path.join(figures_dir, "dice.png"), records, result["mean"]["dice"])
        write_json_atomic(os.path.join(os.fspath(out_dir), "metrics.json"), json_safe(result))
    return result


def _check_labelled(case) -> None:
    if getattr(case, "label", None) is None:
        raise ValueError(
            f"case {getattr(case, 'id', case)!r} has no label: evaluation needs labelled cases"
        )


def _check_empty(empty) -> None:
    if isinstance(empty, str):
        if empty != "nan":
            raise ValueError(f"empty must be 'nan' or a number, got {empty!r}")
    elif isinstance(empty, bool) or not isinstance(empty, numbers.Real):
        raise ValueError(f"empty must be 'nan' or a number, got {empty!r}")


def case_record(
    case_id: str, pred: np.ndarray, ref: np.ndarray, spacing, labels: list[int], empty
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The flat record of one case (every metric of :func:`jaxseg.metrics.evaluate_case` in mm,
    and the distances in voxels as ``<name>_voxels``; the mean over ``labels`` and each label
    under ``"labels"``) and the labels whose prediction/reference mask is empty."""
    in_mm = evaluate_case(pred, ref, spacing=spacing, labels=labels, empty=empty)
    unit_spacing = spacing is None or all(float(s) == 1.0 for s in spacing)
    in_voxels = (
        in_mm
        if unit_spacing
        else evaluate_case(pred, ref, spacing=None, labels=labels, empty=empty)
    )

    def merge(mm: Mapping[str, float], voxels: Mapping[str, float]) -> dict[str, float]:
        scores = {name: float(mm[name]) for name in METRICS}
        scores.update({f"{name}_voxels": float(voxels[name]) for name in _DISTANCES})
        return scores

    record: dict[str, Any] = {"id": case_id}
    record.update(merge(in_mm["mean"], in_voxels["mean"]))
    record["labels"] = {
        str(label): merge(in_mm["labels"][label], in_voxels["labels"][label]) for label in labels
    }
    return record, in_mm["empty"]


def nanmean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN (NaN, without a warning, when there is none)."""
    finite = [float(v) for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def nanstd(values: Sequence[float]) -> float:
    """Population standard deviation of the values that are not NaN (NaN when there is none)."""
    finite = [float(v) for v in values if not math.isnan(v)]
    return float(np.std(finite)) if finite else math.nan


def _resolved_stride(patch: Sequence[int], stride) -> list[int]:
    """The per-axis stride :func:`jaxseg.inference.sliding_window` used."""
    if stride is None:
        return [max(int(p) // 2, 1) for p in patch]
    if isinstance(stride, numbers.Integral):
        return [int(stride)] * len(patch)
    return [int(s) for s in stride]


def json_safe(obj):
    """``obj`` with non-finite floats as None and numpy scalars as Python numbers."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def _format(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _file_stem(case_id: str) -> str:
    """A case id as a safe file name (no path separators or leading dots)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", case_id).lstrip(".")
    return stem or "case"
