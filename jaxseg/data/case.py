"""The record every reader produces and every pipeline consumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from jaxseg.errors import DataError


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """One image (and optional label) with its geometry.

    Attributes:
      id: case identifier (file stem or data set id).
      image: float32 ``(*S, C)``, channels last; ``S`` in the order the array is stored on disk.
      label: integer ``(*S)`` label map, or None for unlabelled cases.
      spacing: mm per voxel along each spatial axis, ``len(S)`` positive floats.
      affine: ``(N+1, N+1)`` voxel-to-world matrix (NIfTI ``qform``/``sform``; a diagonal of
        ``spacing`` when the format has none), kept so predictions can be written back.
      source: where the case came from (file paths), named in error messages.

    Construction validates all of this and raises :class:`jaxseg.errors.DataError` naming
    ``source`` (or ``id``) and the problem.
    """

    id: str
    image: np.ndarray
    label: np.ndarray | None = None
    spacing: tuple[float, ...] = ()
    affine: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or self.id
        image = np.asarray(self.image)
        if image.ndim < 2:
            raise DataError(
                f"{where}: image must be (*S, C) with at least one spatial axis, "
                f"got shape {image.shape}"
            )
        if image.dtype != np.float32:
            image = image.astype(np.float32)
        if not np.all(np.isfinite(image)):
            raise DataError(f"{where}: image has non-finite intensities (NaN or inf)")
        spatial = image.shape[:-1]
        ndim = len(spatial)
        spacing = tuple(float(s) for s in self.spacing) if self.spacing else (1.0,) * ndim
        if len(spacing) != ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise DataError(f"{where}: spacing must be {ndim} positive numbers, got {self.spacing}")
        affine = np.diag([*spacing, 1.0]) if self.affine is None else np.asarray(self.affine, float)
        if affine.shape != (ndim + 1, ndim + 1) or not np.all(np.isfinite(affine)):
            raise DataError(
                f"{where}: affine must be a finite ({ndim + 1}, {ndim + 1}) matrix, "
                f"got shape {affine.shape}"
            )
        label = self.label
        if label is not None:
            label = np.asarray(label)
            if label.shape != spatial:
                raise DataError(
                    f"{where}: label shape {label.shape} does not match image "
                    f"spatial shape {spatial}"
                )
            if not np.issubdtype(label.dtype, np.integer):
                rounded = np.rint(label)
                if not np.array_equal(rounded, label):
                    raise DataError(f"{where}: label has non-integer values")
                label = rounded
            label = label.astype(np.int32)
            if label.min(initial=0) < 0:
                raise DataError(f"{where}: label has negative values")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "affine", affine)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.image.shape[:-1]


class MappedCases(Sequence):
    """``cases`` with ``fn`` applied on access, lazily (slices stay lazy).

    With ``keep=True`` (default) each result is kept once computed (a method's preparation may
    be costly and the pipelines read every case many times); ``keep=False`` calls ``fn`` on
    every access, for cases whose result changes during training (e.g. pseudo-labels read from
    files a hook rewrites).
    """

    def __init__(self, cases: Sequence[Case], fn: Callable[[Case], Case], *, keep: bool = True):
        self._cases, self._fn = cases, fn
        self._done: dict[int, Case] | None = {} if keep else None

    def __len__(self) -> int:
        return len(self._cases)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        if self._done is None:
            return self._fn(self._cases[index])
        if index not in self._done:
            self._done[index] = self._fn(self._cases[index])
        return self._done[index]
