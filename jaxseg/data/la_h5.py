"""Left Atrium (LA 2018) volumes in the UA-MT preprocessing, and the papers' split lists.

Layout: ``<root>/<case_id>/mri_norm2.h5`` with datasets ``image`` (float, ``(X, Y, Z)``,
z-scored MR cropped around the atrium) and ``label`` (uint8, 0 background / 1 atrium). The
h5 files carry no spacing; the LA data are 0.625 mm isotropic (:data:`LA_SPACING`).

The split lists shipped with jaxseg are those of UA-MT, SASSNet and DTML: 80 training and 20
test ids. "N labelled" means the first N ids of the training list (:func:`la_partition`).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import h5py
import numpy as np

from jaxseg.data.case import Case
from jaxseg.data.files import MAX_VOXELS, describe, require_file
from jaxseg.errors import DataError

__all__ = ["LA_FILENAME", "LA_SPACING", "la_list_cases", "la_partition", "la_split", "load_la_case"]

LA_SPACING = (0.625, 0.625, 0.625)
"""Voxel spacing (mm) of the LA 2018 MR volumes, used since the h5 files carry none."""

LA_FILENAME = "mri_norm2.h5"
"""File name of a case inside its folder, as written by the UA-MT preprocessing."""


def _read_dataset(f: h5py.File, name: str, path: Path) -> np.ndarray:
    if name not in f:
        raise DataError(f"{path}: missing dataset {name!r} (has {sorted(f.keys())})")
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: {name!r} is a {type(obj).__name__}, not a dataset")
    if not np.issubdtype(obj.dtype, np.number) and obj.dtype != bool:
        raise DataError(f"{path}: dataset {name!r} has non-numeric dtype {obj.dtype}")
    if obj.ndim != 3:
        raise DataError(f"{path}: dataset {name!r} must be 3D (X, Y, Z), got shape {obj.shape}")
    if obj.size > MAX_VOXELS:
        raise DataError(
            f"{path}: dataset {name!r} declares {obj.shape}, more than {MAX_VOXELS} voxels"
        )
    try:
        return np.asarray(obj[()])
    except MemoryError:
        raise
    except Exception as err:  # truncated files fail when the data are read
        raise DataError(
            f"{path}: cannot read dataset {name!r}, truncated or corrupt file ({describe(err)})"
        ) from err


def load_la_case(
    root: str | os.PathLike,
    case_id: str,
    *,
    spacing: tuple[float, float, float] = LA_SPACING,
    with_label: bool = True,
) -> Case:
    """Read ``<root>/<case_id>/mri_norm2.h5`` into a :class:`Case`.

    Args:
      root: folder holding one sub-folder per case (e.g. ``2018LA_Seg_Training Set``).
      case_id: the case folder name, e.g. an id of :func:`la_split`.
      spacing: voxel spacing in mm; the h5 files carry none, the LA data are 0.625 mm isotropic.
      with_label: read the ``label`` dataset (required to exist); False reads only ``image``.

    Returns:
      A Case with image ``(X, Y, Z, 1)`` float32, label ``(X, Y, Z)`` int32 (or None), the given
      spacing and the diagonal affine ``diag(*spacing, 1)``.

    Raises:
      DataError: naming the file, when it is missing, not an HDF5 file or corrupt, lacks the
        ``image`` or ``label`` dataset, a dataset is not 3D or not numeric or declares more
        than :data:`~jaxseg.data.files.MAX_VOXELS` voxels (refused before reading), the shapes
        differ, the image has non-finite values, or the label has non-integer or negative
        values.
    """
    if not case_id or "/" in case_id or "\\" in case_id or case_id in (".", ".."):
        raise ValueError(f"invalid LA case id {case_id!r}")
    path = require_file(Path(root) / case_id / LA_FILENAME, "LA h5 file")
    try:
        handle = h5py.File(path, "r")
    except MemoryError:
        raise
    except Exception as err:
        raise DataError(f"{path}: not an HDF5 file or corrupt ({describe(err)})") from err
    with handle as f:
        image = _read_dataset(f, "image", path)
        label = _read_dataset(f, "label", path) if with_label else None
    if not np.all(np.isfinite(image)):
        bad = int(image.size - np.count_nonzero(np.isfinite(image)))
        raise DataError(f"{path}: dataset 'image' has {bad} non-finite values (NaN or inf)")
    if label is not None:
        if label.shape != image.shape:
            raise DataError(
                f"{path}: dataset 'label' shape {label.shape} differs from 'image' {image.shape}"
            )
        if not np.issubdtype(label.dtype, np.integer) and label.dtype != bool:
            if not np.array_equal(np.rint(label), label):
                raise DataError(f"{path}: dataset 'label' has non-integer values")
        if label.size and label.min() < 0:
            raise DataError(f"{path}: dataset 'label' has negative values")
        label = label.astype(np.int32)
    return Case(
        id=case_id,
        image=image.astype(np.float32)[..., None],
        label=label,
        spacing=spacing,
        affine=None,
        source=str(path),
    )


def _read_list(name: str) -> list[str]:
    text = importlib.resources.files("jaxseg").joinpath("data", "splits", name).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def la_split(split: str, *, labelled: int | None = None) -> list[str]:
    """Case ids of the shipped LA split lists, in list order.

    Args:
      split: "train" (80 ids) or "test" (20 ids).
      labelled: with ``split="train"``, return only the first ``labelled`` ids, the labelled
        subset of the semi-supervised papers (16 or 8). None returns the whole list.
    """
    if split not in ("train", "test"):
        raise ValueError(f"LA split must be 'train' or 'test', got {split!r}")
    ids = _read_list(f"la_{split}.list")
    if labelled is None:
        return ids
    if split != "train":
        raise ValueError("labelled= applies to the train split only")
    if not 0 <= labelled <= len(ids):
        raise ValueError(f"labelled must be in [0, {len(ids)}], got {labelled}")
    return ids[:labelled]


def la_partition(n_labelled: int) -> tuple[list[str], list[str]]:
    """``(labelled_ids, unlabelled_ids)``: the first ``n_labelled`` train ids and the rest.

    ``la_partition(16)`` is the 16-label setting of SASSNet and DTML (20 %), ``la_partition(8)``
    the 8-label one.
    """
    ids = la_split("train")
    if not 0 <= n_labelled <= len(ids):
        raise ValueError(f"n_labelled must be in [0, {len(ids)}], got {n_labelled}")
    return ids[:n_labelled], ids[n_labelled:]


def la_list_cases(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(case_ids, folders_without_file)`` found under ``root``.

    ``case_ids`` are the sub-folders holding ``mri_norm2.h5``, sorted; the second list names the
    (non-hidden) sub-folders that lack it, so that nothing is skipped without a word.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: LA data folder not found")
    found, missing = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        (found if (sub / LA_FILENAME).exists() else missing).append(sub.name)
    return found, missing
