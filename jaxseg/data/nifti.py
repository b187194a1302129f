"""NIfTI image/label pairs (pancreas CT, CCTA, brain MR, Medical Segmentation Decathlon, nnU-Net).

Arrays keep the order of the NIfTI data array: a 3D volume ``(X, Y, Z)`` becomes an image
``(X, Y, Z, 1)``, a 4D one ``(X, Y, Z, C)`` keeps its last axis as channels. Spacing comes from
the header zooms and the affine from ``img.affine`` (sform when set, else qform), so predictions
written back with :func:`save_nifti` overlay the input in a viewer.

The folder layouts of data sets (Decathlon, nnU-Net raw) are listed by
:mod:`jaxseg.data.layouts`; :func:`load_nnunet_case` reads the channel files of one nnU-Net case
with the channels stacked last.

Every problem with a file raises :class:`jaxseg.errors.DataError` naming the file. The header is
checked as stored (:func:`read_header`) before any data is read, so a file claiming more data
than it can hold is refused without allocating it, and nibabel's silent repairs (a zero voxel
size read as 1 mm) never reach a case.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from jaxseg.atomic import atomic_path
from jaxseg.data.case import Case
from jaxseg.data.files import (
    MAX_VOXELS,
    describe,
    require_file,
    strip_suffix,
)
from jaxseg.errors import DataError

__all__ = [
    "CHANNEL_NAME",
    "MAX_VOXELS",
    "NIFTI_SUFFIXES",
    "is_nifti",
    "load_case",
    "load_label",
    "load_nnunet_case",
    "read_header",
    "save_nifti",
]

NIFTI_SUFFIXES = (".nii.gz", ".nii")

CHANNEL_NAME = re.compile(r"^(.+)_(\d{4})$")
"""An nnU-Net channel file name without its suffix: ``NAME_XXXX`` with four digits."""


def is_nifti(path: Path) -> bool:
    """Whether ``path`` is named like a NIfTI file (``.nii`` or ``.nii.gz``, any case)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


_DEFLATE_RATIO = 1032  # the largest expansion of a deflate stream


def read_header(path: str | os.PathLike, what: str = "image") -> nib.Nifti1Header:
    """The header of a NIfTI-1 or NIfTI-2 file as stored (no repair), checked before any data
    is read.

    Refused (DataError naming the file): an unreadable header; a data array of fewer than 3 or
    more than 5 dimensions, or of more than :data:`MAX_VOXELS` elements; complex or non-numeric
    data; a header that claims more data than the file holds (an uncompressed file shorter
    than its data, or a compressed one too small to expand to it); spatial voxel sizes
    (``pixdim[1:4]``) that are not positive and finite; an affine that is not finite and
    invertible.
    """
    path = require_file(path, f"{what} file")
    try:
        with nib.openers.ImageOpener(path) as f:
            first = f.read(4)
            f.seek(0)
            size = max(int.from_bytes(first, "little"), int.from_bytes(first, "big"))
            klass = nib.Nifti2Header if size == 540 else nib.Nifti1Header
            header = klass.from_fileobj(f, check=False)
    except Exception as err:  # nibabel and gzip raise many kinds for bad headers
        raise DataError(
            f"{path}: not a NIfTI file, or its header is truncated or corrupt ({describe(err)})"
        ) from err
    shape = tuple(int(n) for n in header.get_data_shape())
    if not 3 <= len(shape) <= 5 or min(shape) < 1:
        raise DataError(f"{path}: the {what} must have 3 to 5 dimensions, the header says {shape}")
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise DataError(f"{path}: the header claims {shape}, more than {MAX_VOXELS} voxels")
    dtype = header.get_data_dtype()
    if np.issubdtype(dtype, np.complexfloating) or not (
        np.issubdtype(dtype, np.number) or dtype.kind == "b"
    ):
        raise DataError(f"{path}: unsupported NIfTI data type {dtype} (complex or not numeric)")
    needed = voxels * dtype.itemsize + int(header.get_data_offset())
    stored = path.stat().st_size
    compressed = path.name.lower().endswith(".gz")
    if needed > (stored * _DEFLATE_RATIO if compressed else stored):
        raise DataError(
            f"{path}: truncated or corrupt: the header claims {needed} bytes of data ({shape}, "
            f"{dtype}), more than the {stored}-byte file can hold"
        )
    zooms = np.asarray(header["pixdim"][1 : 1 + min(3, len(shape))], float)
    if not (np.all(np.isfinite(zooms)) and np.all(zooms > 0)):
        raise DataError(f"{path}: voxel sizes (pixdim) must be positive, got {zooms.tolist()}")
    affine = np.asarray(header.get_best_affine(), float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{path}: the affine is not a finite invertible matrix")
    return header


def _read(path: str | os.PathLike, what: str) -> tuple[nib.Nifti1Image, np.ndarray]:
    """The nibabel image and its full data array (scaling applied), or DataError."""
    path = require_file(path, f"{what} file")
    read_header(path, what)
    try:
        img = nib.load(path, mmap=False)
    except MemoryError:
        raise
    except Exception as err:  # nibabel raises many kinds for bad headers
        raise DataError(
            f"{path}: not a NIfTI file, or its header is truncated or corrupt ({describe(err)})"
        ) from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(f"{path}: not a NIfTI file (nibabel read it as {type(img).__name__})")
    try:
        data = np.asanyarray(img.dataobj)
    except MemoryError:
        raise
    except Exception as err:  # EOFError, zlib.error, OSError, ValueError for short files
        raise DataError(f"{path}: truncated or corrupt NIfTI data ({describe(err)})") from err
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise DataError(f"{path}: unsupported NIfTI data type {data.dtype}")
    return img, np.asarray(data)


def _spatial(img: nib.Nifti1Image) -> tuple[np.ndarray, tuple[float, ...]]:
    return np.asarray(img.affine, dtype=float), tuple(float(z) for z in img.header.get_zooms()[:3])


def load_case(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike | None = None,
    *,
    case_id: str | None = None,
    num_classes: int | None = None,
    require_label: bool = False,
    affine_atol: float = 1e-3,
) -> Case:
    """Read a NIfTI image (and label) into a validated :class:`Case`.

    Args:
      image_path: ``.nii`` or ``.nii.gz`` image. A 3D volume ``(X, Y, Z)`` becomes
        ``(X, Y, Z, 1)``; a 4D one ``(X, Y, Z, C)`` keeps its last axis as channels (a 5D
        ``(X, Y, Z, 1, C)`` vector image is read as 4D). Intensities are the stored values with
        the header scaling applied, as float32 (e.g. Hounsfield units for CT).
      label_path: optional label map on the same grid; 3D (or 4D with one channel), integer
        valued, non-negative.
      case_id: id of the case; default the image file name without ``.nii[.gz]``.
      num_classes: when given, every label value must lie in ``range(num_classes)``.
      require_label: when True, a label file must be given and must hold some foreground.
      affine_atol: largest absolute difference (mm) allowed between the image and label
        affines.

    Returns:
      A :class:`Case` with spacing from the image header zooms and affine ``img.affine``.

    Raises:
      DataError: naming the file, when a file is missing, unreadable, truncated or corrupt, the
        image has non-finite values, or the label does not fit the image (shape, affine), has
        non-integer, negative or out-of-range values, or no foreground with ``require_label``.
    """
    img, data = _read(image_path, "image")
    image_path = Path(image_path)
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise DataError(
            f"{image_path}: expected a 3D (X, Y, Z) or 4D (X, Y, Z, C) image, "
            f"got shape {data.shape}"
        )
    image = data.astype(np.float32)
    if not np.all(np.isfinite(image)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise DataError(f"{image_path}: image has {bad} non-finite intensities (NaN or inf)")
    affine, spacing = _spatial(img)

    label = None
    if label_path is None:
        if require_label:
            raise DataError(f"{image_path}: a label file is required but none was given")
    else:
        label_path = Path(label_path)
        lab_img, lab = _read(label_path, "label")
        if lab.ndim == 4 and lab.shape[3] == 1:
            lab = lab[..., 0]
        if lab.shape != image.shape[:3]:
            raise DataError(
                f"{label_path}: label shape {lab.shape} does not match image shape "
                f"{image.shape[:3]} of {image_path}"
            )
        lab_affine, _ = _spatial(lab_img)
        if not np.allclose(lab_affine, affine, rtol=0.0, atol=affine_atol):
            diff = float(np.abs(lab_affine - affine).max())
            raise DataError(
                f"{label_path}: label affine differs from the affine of {image_path} by up to "
                f"{diff:.3g} (tolerance {affine_atol:g}); the label is not on the image grid"
            )
        label = _integer_label(lab, label_path, num_classes, require_label)

    source = str(image_path) if label_path is None else f"{image_path} (label {label_path})"
    return Case(
        id=case_id if case_id is not None else strip_suffix(image_path.name),
        image=image,
        label=label,
        spacing=spacing,
        affine=affine,
        source=source,
    )


def load_label(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """A NIfTI label map on its own: ``(label int32 (X, Y, Z), spacing, affine)``.

    Raises:
      DataError: naming the file, as :func:`load_case` does for labels (unreadable, not 3D,
        non-integer or negative values).
    """
    img, lab = _read(path, "label")
    if lab.ndim == 4 and lab.shape[3] == 1:
        lab = lab[..., 0]
    if lab.ndim != 3:
        raise DataError(f"{path}: a label map must be 3D, got shape {lab.shape}")
    affine, spacing = _spatial(img)
    return _integer_label(lab, Path(path), None, False), spacing, affine


def _integer_label(
    lab: np.ndarray, path: Path, num_classes: int | None, require_label: bool
) -> np.ndarray:
    """Validate a label array read from ``path`` and return it as int32."""
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.isfinite(lab)):
            raise DataError(f"{path}: label has non-finite values")
        rounded = np.rint(lab)
        if not np.array_equal(rounded, lab):
            raise DataError(f"{path}: label has non-integer values")
        lab = rounded
    if lab.size and lab.min() < 0:
        raise DataError(f"{path}: label has negative values (min {lab.min():g})")
    if lab.size and lab.max() > np.iinfo(np.int32).max:
        raise DataError(f"{path}: label values too large for int32 (max {lab.max():g})")
    lab = lab.astype(np.int32)
    if num_classes is not None:
        outside = np.unique(lab[lab >= num_classes])
        if outside.size:
            raise DataError(
                f"{path}: label values {outside[:10].tolist()} outside range({num_classes})"
            )
    if require_label and not np.any(lab):
        raise DataError(f"{path}: label is empty (no foreground voxel)")
    return lab


def _storage_dtype(array: np.ndarray) -> np.dtype:
    """The on-disk dtype for ``array``: compact integers for label maps, float32 otherwise."""
    if array.dtype == bool:
        return np.dtype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for candidate in (np.uint8, np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return np.dtype(candidate)
        raise ValueError(f"integer values in [{lo}, {hi}] do not fit int32")
    if np.issubdtype(array.dtype, np.floating):
        return np.dtype(np.float32)
    raise ValueError(f"cannot write an array of dtype {array.dtype} to NIfTI")


def save_nifti(
    path: str | os.PathLike,
    array: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    reference: str | os.PathLike | None = None,
) -> Path:
    """Write ``array`` as a NIfTI file, atomically.

    The file is written under a temporary name in the destination directory and moved into
    place with ``os.replace``, so ``path`` either keeps its old content or holds the complete new
    file, never a partial one.

    Args:
      path: destination ending in ``.nii.gz`` (compressed) or ``.nii``.
      array: ``(X, Y, Z)`` (a label map or a single-channel image) or ``(X, Y, Z, C)``, in the
        axis order of the reference image. Booleans and integers are stored as the smallest of
        uint8/int16/int32 that holds them; floats as float32.
      affine: ``(4, 4)`` voxel-to-world matrix (e.g. ``case.affine``). Default: the reference's
        affine, or the identity when there is no reference.
      reference: optional NIfTI file (typically the input image) whose header is copied (qform
        and sform codes, units, orientation, description), so the output overlays it in a
        viewer. Its spatial shape must equal ``array.shape[:3]``.

    Returns:
      ``Path(path)``.

    Raises:
      ValueError: for a path that is not ``.nii``/``.nii.gz`` or an array of the wrong rank or
        shape; DataError when the reference cannot be read.
    """
    path = Path(path)
    if not is_nifti(path):
        raise ValueError(f"{path}: a NIfTI path must end in .nii or .nii.gz")
    array = np.asarray(array)
    if array.ndim not in (3, 4):
        raise ValueError(f"expected a (X, Y, Z) or (X, Y, Z, C) array, got shape {array.shape}")
    data = array.astype(_storage_dtype(array))
    header = None
    image_class = nib.Nifti1Image
    if reference is not None:
        ref, _ = _read(reference, "reference")
        if tuple(ref.shape[:3]) != data.shape[:3]:
            raise ValueError(
                f"array spatial shape {data.shape[:3]} differs from the reference "
                f"{reference} shape {tuple(ref.shape[:3])}"
            )
        image_class = type(ref)
        header = ref.header.copy()
        header["cal_min"], header["cal_max"] = 0.0, 0.0  # the input's display range is not ours
        if affine is None:
            affine = ref.affine
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"affine must be a finite (4, 4) matrix, got shape {affine.shape}")
    img = image_class(data, affine, header=header)
    img.set_data_dtype(data.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    if header is None:
        img.header.set_xyzt_units("mm", "sec")

    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


def load_nnunet_case(
    images: Sequence[str | os.PathLike],
    label_path: str | os.PathLike | None = None,
    *,
    case_id: str | None = None,
    num_classes: int | None = None,
    affine_atol: float = 1e-3,
) -> Case:
    """Read the channel files of one nnU-Net case (and its label) into one :class:`Case`.

    Args:
      images: one 3D ``(X, Y, Z)`` NIfTI file per channel, in channel order (``NAME_0000``,
        ``NAME_0001``, ...); all on the same grid (shape, and affine within ``affine_atol``).
      label_path: optional label map on that grid (see :func:`load_case`).
      case_id: default the first file's name without ``_0000.nii[.gz]``.
      num_classes, affine_atol: as for :func:`load_case`.

    Returns:
      A Case with image ``(X, Y, Z, C)`` float32, the channels stacked last in the given order,
      and the spacing and affine of the first channel.

    Raises:
      DataError: naming the file, for any problem :func:`load_case` reports, a channel file that
        is not 3D, or a channel whose shape or affine differs from the first channel's.
    """
    if not images:
        raise ValueError("load_nnunet_case needs at least one channel file")
    paths = [Path(p) for p in images]
    if case_id is None:
        stem = strip_suffix(paths[0].name)
        case_id = stem[:-5] if CHANNEL_NAME.match(stem) else stem
    first = load_case(
        paths[0], label_path, case_id=case_id, num_classes=num_classes, affine_atol=affine_atol
    )
    stacked = []
    for path in paths:
        channel = first if path is paths[0] else load_case(path)
        if channel.image.shape[-1] != 1:
            raise DataError(
                f"{path}: an nnU-Net channel file must be 3D (X, Y, Z), got shape "
                f"{channel.image.shape}"
            )
        if channel.spatial_shape != first.spatial_shape:
            raise DataError(
                f"{path}: channel shape {channel.spatial_shape} differs from the shape "
                f"{first.spatial_shape} of {paths[0]}"
            )
        if not np.allclose(channel.affine, first.affine, rtol=0.0, atol=affine_atol):
            diff = float(np.abs(channel.affine - first.affine).max())
            raise DataError(
                f"{path}: channel affine differs from the affine of {paths[0]} by up to "
                f"{diff:.3g} (tolerance {affine_atol:g})"
            )
        stacked.append(channel.image)
    files = ", ".join(str(p) for p in paths)
    return Case(
        id=case_id,
        image=np.concatenate(stacked, axis=-1),
        label=first.label,
        spacing=first.spacing,
        affine=first.affine,
        source=files if label_path is None else f"{files} (label {label_path})",
    )
