"""2D PNG image/label pairs: the letter-B data set of Atlas-ISTN.

Images are 8-bit (or 16-bit) grey PNGs read as float32 with the stored values (0..255, not
rescaled; normalisation is a preprocessing step). Arrays keep the PNG's storage order: axis 0 is
the image row, axis 1 the column, so a ``H x W`` PNG gives ``(H, W, 1)``.

Label rule: a label PNG whose values are all in {0, 255} is a binary mask and is read as
``value // 255`` (0/1); any other label PNG holds class indices and is read as stored (grey or
palette indices). RGB or grey+alpha PNGs are refused.

The released data list cases in CSV files with a header line ``img`` and one path per row,
starting with ``data/synth2d/``; :func:`png_list_cases` strips that prefix and resolves the
paths against the data folder.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxseg.data.case import Case
from jaxseg.data.files import CaseFiles, describe, require_file, strip_suffix
from jaxseg.errors import DataError

__all__ = ["CSV_PREFIX", "load_png_case", "png_case_id", "png_list_cases", "read_png"]

CSV_PREFIX = "data/synth2d/"
"""Prefix of the paths in the released letter-B CSV lists, relative to the authors' repo."""

_GREY_MODES = {"L", "I;16", "I;16B", "I;16L", "I", "F", "1"}


def read_png(path: str | os.PathLike, *, what: str = "image", palette: bool = False) -> np.ndarray:
    """Read a single-channel PNG as a 2D numpy array (values as stored).

    Args:
      path: the PNG file.
      what: how the file is named in error messages ("image", "label").
      palette: accept palette ("P") PNGs and return their indices (for label maps).

    Raises:
      DataError: naming the file, when it is missing, not a PNG, truncated or corrupt, or has
        colour or alpha channels.
    """
    path = require_file(path, f"{what} file")
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()  # chunk CRCs and structure, without decoding
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG":
                raise DataError(f"{path}: {what} is a {im.format} file, expected PNG")
            im.load()
            mode = im.mode
            array = np.array(im)
    except DataError:
        raise
    except UnidentifiedImageError as err:
        raise DataError(f"{path}: {what} is not a PNG (unrecognised file format)") from err
    except MemoryError:
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise DataError(f"{path}: unreadable, truncated or corrupt PNG ({describe(err)})") from err
    if mode == "P" and palette:
        return array
    if mode not in _GREY_MODES:
        raise DataError(
            f"{path}: {what} has colour mode {mode!r} (shape {array.shape}); expected a "
            "single-channel grey PNG"
        )
    if array.ndim != 2:
        raise DataError(f"{path}: {what} must be 2D, got shape {array.shape}")
    return array


def png_case_id(image_path: str | os.PathLike) -> str:
    """Case id from an image file name: ``B17_img.png`` -> ``B17``."""
    stem = strip_suffix(Path(image_path).name)
    return stem[: -len("_img")] if stem.endswith("_img") and len(stem) > 4 else stem


def _label_values(raw: np.ndarray) -> np.ndarray:
    if raw.dtype == bool:
        return raw.astype(np.int32)
    if not np.issubdtype(raw.dtype, np.integer):
        if not np.array_equal(np.rint(raw), raw):
            raise ValueError("non-integer")
        raw = np.rint(raw).astype(np.int64)
    values = np.unique(raw)
    if values.size and np.isin(values, (0, 255)).all():
        return (raw // 255).astype(np.int32)
    return raw.astype(np.int32)


def load_png_case(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike | None = None,
    *,
    spacing: tuple[float, float] = (1.0, 1.0),
    case_id: str | None = None,
) -> Case:
    """Read a grey PNG image (and label PNG) into a 2D :class:`Case`.

    Args:
      image_path: single-channel PNG; read as float32 ``(H, W, 1)`` with the stored values.
      label_path: optional single-channel (or palette) PNG of the same size. Binary masks stored
        as 0/255 become 0/1 (``value // 255``); other label PNGs are class indices as stored.
      spacing: pixel size (mm) along (rows, columns); PNGs carry none.
      case_id: default from the image name, ``B17_img.png`` -> ``B17``.

    Returns:
      A Case with the given spacing and affine ``diag(*spacing, 1)``.

    Raises:
      DataError: naming the file, when it is missing, not a PNG, truncated or corrupt, colour
        where grey is expected, or the label size differs from the image size.
    """
    image_path = Path(image_path)
    image = read_png(image_path, what="image").astype(np.float32)
    label = None
    if label_path is not None:
        label_path = Path(label_path)
        raw = read_png(label_path, what="label", palette=True)
        if raw.shape != image.shape:
            raise DataError(
                f"{label_path}: label size {raw.shape} differs from image size {image.shape} "
                f"of {image_path}"
            )
        try:
            label = _label_values(raw)
        except ValueError:
            raise DataError(f"{label_path}: label has non-integer values ({raw.dtype})") from None
    source = str(image_path) if label_path is None else f"{image_path} (label {label_path})"
    return Case(
        id=case_id if case_id is not None else png_case_id(image_path),
        image=image[..., None],
        label=label,
        spacing=spacing,
        affine=None,
        source=source,
    )


def _read_csv_list(path: Path) -> list[str]:
    path = require_file(path, "CSV list")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable CSV list ({describe(err)})") from err
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{path}: empty CSV list (expected a header line 'img')")
    header = [cell.strip() for cell in rows[0]]
    if "img" not in header:
        raise DataError(f"{path}: CSV list has no column 'img' (header {rows[0]})")
    column = header.index("img")
    entries = []
    for number, row in enumerate(rows[1:], start=2):
        if column >= len(row) or not row[column].strip():
            raise DataError(f"{path}: line {number} has no 'img' entry")
        entries.append(row[column].strip())
    return entries


def _resolve(root: Path, entry: str, prefix: str) -> Path:
    entry = entry.replace("\\", "/")
    if prefix and entry.startswith(prefix):
        entry = entry[len(prefix) :]
    return root / entry


def png_list_cases(
    root: str | os.PathLike,
    image_csv: str | os.PathLike,
    label_csv: str | os.PathLike | None = None,
    *,
    prefix: str = CSV_PREFIX,
) -> list[CaseFiles]:
    """Case listings from the letter-B CSV lists.

    Args:
      root: the data folder (the one holding ``clean/``, ``corrupt/`` and the CSVs).
      image_csv: CSV of image paths, header ``img``; relative names resolve against ``root``.
      label_csv: CSV of label paths in the same order (row i labels image i), or None.
      prefix: stripped from each entry before it is resolved against ``root``.

    Returns:
      :class:`CaseFiles` ``(id, image, label)`` in CSV order; ids from the image names
      (``B17_img.png`` -> ``B17``). The PNGs are not opened here (see :func:`load_png_case`).

    Raises:
      DataError: naming the CSV, when it is missing, has no ``img`` column or an empty row, or
        the two lists differ in length.
    """
    root = Path(root)
    image_csv, label_csv = root / image_csv, None if label_csv is None else root / label_csv
    images = [_resolve(root, e, prefix) for e in _read_csv_list(image_csv)]
    if label_csv is None:
        return [CaseFiles(png_case_id(p), p, None) for p in images]
    labels = [_resolve(root, e, prefix) for e in _read_csv_list(label_csv)]
    if len(labels) != len(images):
        raise DataError(
            f"{label_csv}: lists {len(labels)} labels but {image_csv} lists {len(images)} images"
        )
    return [CaseFiles(png_case_id(p), p, q) for p, q in zip(images, labels)]
