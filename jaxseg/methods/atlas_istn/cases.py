"""Atlas-ISTN's preprocessing of the data source's cases, and batches of whole cases."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from jaxseg.data.case import Case
from jaxseg.data.preprocess import resample_to_shape, zscore
from jaxseg.errors import DataError

__all__ = ["chunks", "prepare_case", "stack_cases", "to_model_grid"]


def to_model_grid(config: Any, case: Case) -> Case:
    """``case`` resampled to the fixed grid ``data.size`` (image linear, label nearest when it
    has one; the spacing follows, the field of view is kept) with its image z-scored: what the
    networks see of a training case, or of an image ``jaxseg predict`` reads.

    Raises:
      DataError: naming the case's file, if it has a spatial rank other than ``data.size``'s or
        more than one image channel.
    """
    where = case.source or case.id
    size = tuple(int(s) for s in config.data.size)
    if len(case.spatial_shape) != len(size):
        raise DataError(
            f"{where}: {len(case.spatial_shape)}D case for a {len(size)}D data.size {size}"
        )
    if case.image.shape[-1] != 1:
        raise DataError(f"{where}: one image channel expected, got {case.image.shape[-1]}")
    if tuple(case.spatial_shape) != size:
        case = resample_to_shape(case, size)
    return dataclasses.replace(case, image=zscore(case.image))


def prepare_case(config: Any, case: Case) -> Case:
    """A labelled training or test case on the model's grid (:func:`to_model_grid`).

    Raises:
      DataError: naming the case's file, if it has no label, a spatial rank other than
        ``data.size``'s, more than one image channel, or label values outside
        ``range(data.num_classes)``.
    """
    where = case.source or case.id
    if case.label is None:
        raise DataError(f"{where}: Atlas-ISTN needs labelled cases")
    case = to_model_grid(config, case)
    label = np.asarray(case.label)
    k = int(config.data.num_classes)
    if label.max() >= k:
        raise DataError(
            f"{where}: label values in [{label.min()}, {label.max()}] outside "
            f"range(data.num_classes = {k})"
        )
    return case


def stack_cases(cases: Sequence[Case]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(M, *S, 1)`` float32 and labels ``(M, *S)`` int32 of prepared cases."""
    images = np.stack([np.asarray(c.image, np.float32) for c in cases])
    labels = np.stack([np.asarray(c.label, np.int32) for c in cases])
    return images, labels


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
