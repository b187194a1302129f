"""The folder layouts of NIfTI data sets: the Medical Segmentation Decathlon's and nnU-Net's raw.

The Decathlon layout (``dataset.json``, ``imagesTr/NAME.nii.gz``, ``labelsTr/NAME.nii.gz``,
``imagesTs/``; :func:`decathlon_cases`) and nnU-Net's raw layout (one file per channel,
``imagesTr/NAME_0000.nii.gz``; :func:`nnunet_cases`) are told apart by :func:`nifti_layout`; the
files are read by :mod:`jaxseg.data.nifti`. Every problem raises
:class:`jaxseg.errors.DataError` naming the folder or file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from jaxseg.data.files import (
    CaseFiles,
    ChannelFiles,
    describe,
    require_file,
    strip_suffix,
    visible_files,
)
from jaxseg.data.nifti import CHANNEL_NAME, NIFTI_SUFFIXES, is_nifti
from jaxseg.errors import DataError

__all__ = ["decathlon_cases", "nifti_layout", "nnunet_cases", "paired_cases", "scan_decathlon"]

_SPLIT_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}


def scan_decathlon(
    root: str | os.PathLike, split: str = "train"
) -> tuple[list[CaseFiles], list[Path]]:
    """Like :func:`decathlon_cases`, but returns the unmatched files instead of raising.

    Returns ``(cases, orphan_labels)``. An image without its label is listed with the label path
    it should have had, which does not exist, so loading it raises a DataError naming that path;
    ``orphan_labels`` are the label files with no image of the same name.
    """
    images, labels = _split_folders(root, split)
    if not images.is_dir():
        raise DataError(f"{images}: folder not found (Decathlon layout expects it)")
    image_files = {p.name: p for p in visible_files(images) if is_nifti(p)}
    if split == "test" and not labels.is_dir():
        return [CaseFiles(strip_suffix(n), p, None) for n, p in image_files.items()], []
    label_files = (
        {p.name: p for p in visible_files(labels) if is_nifti(p)} if labels.is_dir() else {}
    )
    cases = [CaseFiles(strip_suffix(n), p, labels / n) for n, p in image_files.items()]
    orphans = [p for n, p in label_files.items() if n not in image_files]
    return cases, orphans


def decathlon_cases(root: str | os.PathLike, *, split: str = "train") -> list[CaseFiles]:
    """List the cases of a Medical Segmentation Decathlon style folder.

    Layout: ``root/imagesTr/NAME.nii.gz`` with labels ``root/labelsTr/NAME.nii.gz`` (split
    "train"), and optionally ``root/imagesTs/`` (split "test", unlabelled unless a
    ``labelsTs/`` folder exists). Images and labels are matched by file name; hidden files
    (``._NAME`` from macOS archives) are ignored.

    Policy for unmatched files: nothing is dropped silently. In a labelled split an image
    without a label (or a label without an image) raises :class:`DataError` listing every
    unmatched file; :func:`scan_decathlon` returns them instead, for validation tools.

    Returns:
      :class:`CaseFiles` ``(id, image, label)`` sorted by file name; ``label`` is None in an
      unlabelled test split. The files are not opened (see :func:`load_case`).
    """
    cases, orphans = scan_decathlon(root, split)
    problems = [
        f"{c.image}: image has no label file {c.label}"
        for c in cases
        if c.label is not None and not c.label.is_file()
    ]
    problems += [f"{p}: label has no image of the same name" for p in orphans]
    if problems:
        raise DataError(f"{root}: unmatched files in split {split!r}:\n  " + "\n  ".join(problems))
    return cases


def paired_cases(
    pairs: Iterable[Sequence[str | os.PathLike | None]],
) -> list[CaseFiles]:
    """Case listings from explicit ``(image, label)`` or ``(id, image, label)`` paths.

    ``label`` may be None for unlabelled cases. Without an explicit id, the id is the image file
    name without ``.nii[.gz]``.

    Raises:
      DataError: naming the files, when an image or label file does not exist or two cases get
        the same id.
    """
    cases: list[CaseFiles] = []
    seen: dict[str, Path] = {}
    for item in pairs:
        item = tuple(item)
        if len(item) == 2:
            image, label = item
            case_id = strip_suffix(Path(image).name)
        elif len(item) == 3:
            case_id, image, label = item
            case_id = str(case_id)
        else:
            raise ValueError(f"expected (image, label) or (id, image, label), got {item!r}")
        image = require_file(image, "image file")
        label = None if label is None else require_file(label, "label file")
        if case_id in seen:
            raise DataError(
                f"{image}: case id {case_id!r} also used by {seen[case_id]}; give explicit ids "
                "as (id, image, label)"
            )
        seen[case_id] = image
        cases.append(CaseFiles(case_id, image, label))
    return cases


def _split_folders(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    if split not in _SPLIT_FOLDERS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return tuple(Path(root) / name for name in _SPLIT_FOLDERS[split])


def _nifti_files(directory: Path) -> list[Path]:
    return [p for p in visible_files(directory) if is_nifti(p)] if directory.is_dir() else []


def _dataset_json(root: Path) -> dict | None:
    """The parsed ``root/dataset.json``, None when there is none, DataError when it is bad."""
    path = root / "dataset.json"
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: unreadable dataset.json ({describe(err)})") from err
    if not isinstance(meta, dict):
        raise DataError(f"{path}: dataset.json must hold a JSON object, got {type(meta).__name__}")
    return meta


def nifti_layout(root: str | os.PathLike) -> str:
    """``"nnunet"`` or ``"decathlon"``: the layout of a NIfTI data folder.

    nnU-Net when ``root/dataset.json`` has ``channel_names`` and ``file_ending`` (nnU-Net v2), or
    when every image of ``imagesTr/`` is named ``NAME_XXXX`` (four digits) and no label of
    ``labelsTr/`` has the name of an image (nnU-Net labels are ``NAME``); Decathlon otherwise
    (images and labels of the same name).

    Raises:
      DataError: naming the file, when dataset.json is unreadable or names a file ending other
        than ``.nii.gz``/``.nii``, or (for the file-name rule) ``imagesTr/`` does not exist.
    """
    root = Path(root)
    meta = _dataset_json(root)
    if meta is not None and "channel_names" in meta and "file_ending" in meta:
        if meta["file_ending"] not in NIFTI_SUFFIXES:
            raise DataError(
                f"{root / 'dataset.json'}: file_ending {meta['file_ending']!r} is not NIfTI "
                f"(expected one of {list(NIFTI_SUFFIXES)})"
            )
        return "nnunet"
    images, labels = _split_folders(root, "train")
    if not images.is_dir():
        raise DataError(f"{images}: folder not found (Decathlon and nnU-Net layouts expect it)")
    stems = {strip_suffix(p.name) for p in _nifti_files(images)}
    label_stems = {strip_suffix(p.name) for p in _nifti_files(labels)}
    nnunet = bool(stems) and all(CHANNEL_NAME.match(s) for s in stems) and not stems & label_stems
    return "nnunet" if nnunet else "decathlon"


def nnunet_cases(root: str | os.PathLike, *, split: str = "train") -> list[ChannelFiles]:
    """List the cases of an nnU-Net raw folder.

    Layout: ``root/imagesTr/NAME_XXXX.nii.gz`` (``XXXX`` the channel, ``0000``, ``0001``, ...)
    with labels ``root/labelsTr/NAME.nii.gz`` (split "train"), and optionally ``imagesTs/``
    (split "test", unlabelled unless a ``labelsTs/`` folder exists). Every case must have the
    channels ``0000`` to ``C-1`` with the same ``C`` for all cases (``C`` is the number of
    ``channel_names`` when ``root/dataset.json`` lists them). Hidden files are ignored.

    Returns:
      :class:`ChannelFiles` ``(id, images, label)`` sorted by id, ``images`` in channel order;
      ``label`` is None in an unlabelled test split. The files are not opened (see
      :func:`load_nnunet_case`).

    Raises:
      DataError: naming ``root`` and listing every problem: a missing images folder, an image
        not named ``NAME_XXXX``, missing or repeated channels, an image without its label, a
        label without images.
    """
    root = Path(root)
    images, labels = _split_folders(root, split)
    if not images.is_dir():
        raise DataError(f"{images}: folder not found (nnU-Net layout expects it)")
    meta = _dataset_json(root) or {}
    names = meta.get("channel_names")
    if names is not None and not (isinstance(names, dict | list) and names):
        raise DataError(f"{root / 'dataset.json'}: channel_names must be a non-empty mapping")
    n_channels = None if names is None else len(names)
    problems: list[str] = []
    channels: dict[str, dict[int, Path]] = {}
    for path in _nifti_files(images):
        match = CHANNEL_NAME.match(strip_suffix(path.name))
        if match is None:
            problems.append(f"{path}: image not named NAME_XXXX (nnU-Net channel suffix)")
            continue
        case, channel = match[1], int(match[2])
        other = channels.setdefault(case, {}).setdefault(channel, path)
        if other != path:
            problems.append(f"{path}: channel {channel:04d} of case {case!r} is also in {other}")
    if n_channels is None and channels:
        n_channels = max(len(c) for c in channels.values())
    for case, files in channels.items():
        if sorted(files) != list(range(n_channels)):
            found = ", ".join(f"{c:04d}" for c in sorted(files))
            problems.append(
                f"{images}/{case}_XXXX: channels {found}, expected 0000 to {n_channels - 1:04d}"
            )
    label_files = {strip_suffix(p.name): p for p in _nifti_files(labels)}
    unlabelled = split == "test" and not labels.is_dir()
    cases = []
    for case in sorted(channels):
        first = channels[case][min(channels[case])]
        suffix = ".nii.gz" if first.name.lower().endswith(".nii.gz") else ".nii"
        label = None if unlabelled else label_files.get(case, labels / f"{case}{suffix}")
        if label is not None and not label.is_file():
            problems.append(f"{first}: image has no label file {label}")
        cases.append(ChannelFiles(case, tuple(p for _, p in sorted(channels[case].items())), label))
    problems += [
        f"{p}: label has no image {n}_0000 in {images}"
        for n, p in label_files.items()
        if n not in channels
    ]
    if problems:
        raise DataError(
            f"{root}: bad nnU-Net folder in split {split!r}:\n  " + "\n  ".join(problems)
        )
    return cases
