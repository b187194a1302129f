"""Scoring a folder of predictions against a folder of references, independent of any run:
``jaxseg evaluate --pred DIR --ref DIR``.

Files are paired by case id (the file name without ``.nii``/``.nii.gz``); a reference without a
prediction is reported as missing (and makes the command fail), a prediction without a reference
is listed and ignored. Each pair must share its grid (shape, and affine within 1e-3 mm). Metrics
are those of every jaxseg evaluation (:func:`jaxseg.train.evaluate.case_record`: Dice, Jaccard,
HD95, Hausdorff, ASD, ASSD, in mm with the spacing of the reference, or of the prediction with
``spacing_from="pred"``, and the distances in voxels), per label and as their mean over the
labels. Written: ``summary.json`` (cases, mean and std over cases, missing and extra ids) and
``metrics.csv`` (one row per case).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxseg.atomic import atomic_path
from jaxseg.data.files import strip_suffix, visible_files
from jaxseg.data.nifti import is_nifti, load_label
from jaxseg.errors import DataError
from jaxseg.train.evaluate import case_record, json_safe, nanmean, nanstd
from jaxseg.train.logging import write_json_atomic

__all__ = ["score_folders"]


def _listing(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: the {what} folder does not exist")
    files = {}
    for path in visible_files(folder):
        if is_nifti(path):
            case_id = strip_suffix(path.name)
            if case_id in files:
                raise DataError(f"{folder}: case {case_id!r} has two files")
            files[case_id] = path
    if not files:
        raise DataError(f"{folder}: the {what} folder holds no .nii or .nii.gz file")
    return files


def _pair(case_id: str, pred_path: Path, ref_path: Path, labels, spacing_from: str, empty):
    pred, pred_spacing, pred_affine = load_label(pred_path)
    ref, ref_spacing, ref_affine = load_label(ref_path)
    if pred.shape != ref.shape:
        raise DataError(f"{pred_path}: shape {pred.shape} differs from {ref_path} {ref.shape}")
    if not np.allclose(pred_affine, ref_affine, rtol=0.0, atol=1e-3):
        raise DataError(f"{pred_path}: not on the grid of {ref_path} (their affines differ)")
    spacing = ref_spacing if spacing_from == "ref" else pred_spacing
    found = {int(v) for v in np.unique(ref) if v > 0} | {int(v) for v in np.unique(pred) if v > 0}
    wanted = sorted(found or {1}) if labels is None else list(labels)
    record, _ = case_record(case_id, pred, ref, spacing, wanted, empty)
    return record


def score_folders(
    pred: str | os.PathLike,
    ref: str | os.PathLike,
    *,
    labels: Sequence[int] | None = None,
    spacing_from: str = "ref",
    out_dir: str | os.PathLike | None = None,
    empty: str | float = "nan",
) -> dict[str, Any]:
    """Score the label maps of folder ``pred`` against those of ``ref`` (module docstring).

    Args:
      labels: the label values scored; default every foreground value of either map.
      spacing_from: "ref" or "pred", whose voxel sizes give the mm.
      out_dir: where ``summary.json`` and ``metrics.csv`` go (default: ``pred``).
      empty: the value of a distance with an empty mask ("nan", or a number).

    Returns:
      The content of ``summary.json``.

    Raises:
      DataError: naming the file, for a missing folder, an unreadable map or a pair on
        different grids; ValueError for bad arguments.
    """
    if spacing_from not in ("ref", "pred"):
        raise ValueError(f"spacing_from must be 'ref' or 'pred', got {spacing_from!r}")
    pred, ref = Path(pred), Path(ref)
    preds, refs = _listing(pred, "prediction"), _listing(ref, "reference")
    cases = [_pair(i, preds[i], refs[i], labels, spacing_from, empty) for i in refs if i in preds]
    metrics = [k for k in (cases[0] if cases else {}) if k not in ("id", "labels")]
    summary = {
        "pred": str(pred),
        "ref": str(ref),
        "spacing_from": spacing_from,
        "cases": cases,
        "mean": {k: nanmean([c[k] for c in cases]) for k in metrics},
        "std": {k: nanstd([c[k] for c in cases]) for k in metrics},
        "missing": sorted(i for i in refs if i not in preds),
        "extra": sorted(i for i in preds if i not in refs),
    }
    out = pred if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "summary.json", json_safe(summary))
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *metrics])
        for case in cases:
            writer.writerow([case["id"], *(f"{case[k]:.6g}" for k in metrics)])
    return summary
