"""File listings shared by the readers: which image goes with which label, and case ids."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from jaxseg.errors import DataError

# Suffixes stripped from file names to make case ids; longest first.
_SUFFIXES = (".nii.gz", ".nii", ".png", ".h5")


class CaseFiles(NamedTuple):
    """Where one case lives on disk: its id, the image file and the label file (or None).

    The listing functions (``decathlon_cases``, ``paired_cases``, ``png_list_cases``) return
    these without opening the files; the ``load_*`` readers open and validate them.
    """

    id: str
    image: Path
    label: Path | None


class ChannelFiles(NamedTuple):
    """One case of an nnU-Net raw folder: one image file per channel, and the label file.

    ``images`` are ``NAME_0000``, ``NAME_0001``, ... in channel order; ``id`` is ``NAME`` (the
    label's name without its suffix); ``label`` is None in an unlabelled test split.
    :func:`jaxseg.data.layouts.nnunet_cases` lists these and
    :func:`jaxseg.data.nifti.load_nnunet_case` stacks the channels.
    """

    id: str
    images: tuple[Path, ...]
    label: Path | None


def strip_suffix(name: str) -> str:
    """A file name without its image suffix (``.nii.gz``, ``.nii``, ``.png``, ``.h5``)."""
    lower = name.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``Path(path)`` when it names an existing regular file, else :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not path.is_file():
        raise DataError(f"{path}: {what} is not a regular file")
    return path


MAX_VOXELS = 2**31
"""The largest data array a reader reads (elements, channels included): 8 GiB as float32. A
NIfTI header or an HDF5 dataset that declares more is refused before anything is allocated."""


def visible_files(directory: Path) -> list[Path]:
    """Regular files of ``directory``, sorted by name, hidden files (``.*``) left out.

    Hidden files are skipped on purpose: archives made on macOS carry ``._name`` resource-fork
    files beside every real file (the Medical Segmentation Decathlon tarballs do). Symbolic
    links to files count as the files.

    Raises:
      DataError: for a visible symbolic link that leads nowhere (its case would otherwise
        vanish from the data set without a word).
    """
    visible = [p for p in directory.iterdir() if not p.name.startswith(".")]
    for path in visible:
        if path.is_symlink() and not path.exists():
            raise DataError(f"{path}: a broken symbolic link (to {os.readlink(path)})")
    return sorted(p for p in visible if p.is_file())


def describe(err: BaseException) -> str:
    """``"TypeName: message"`` on one line, for wrapping library errors into DataError."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
