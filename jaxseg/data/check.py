"""Validation of a data set folder: ``jaxseg data check DIR``.

:func:`check_dataset` recognises the layout (Medical Segmentation Decathlon NIfTI, LA h5
folders, or a letter-B PNG folder with or without CSV lists), loads every case with the readers
of :mod:`jaxseg.data` and records, per case, the shape, spacing, intensity range, label values,
foreground size and problems. Nothing is skipped: a case that fails to load is reported with the
reader's DataError message, and files that belong to no case (a label without its image, a CSV
list without its partner) are reported as problems of the data set.

Problems: a file that cannot be read or does not match its partner, non-finite intensities, a
constant image, an empty label, label values outside the expected classes (known from
``dataset.json``, ``config.json``, the LA format, or the ``num_classes`` argument).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxseg.atomic import write_text
from jaxseg.data.case import Case
from jaxseg.data.files import describe
from jaxseg.data.la_h5 import LA_FILENAME, la_list_cases, la_split, load_la_case
from jaxseg.data.layouts import scan_decathlon
from jaxseg.data.nifti import load_case
from jaxseg.data.png2d import load_png_case, png_case_id, png_list_cases
from jaxseg.errors import DataError

__all__ = ["CaseReport", "DatasetReport", "check_dataset", "detect_layout", "main"]

LAYOUTS = ("decathlon", "la_h5", "png2d")


@dataclasses.dataclass
class CaseReport:
    """What :func:`check_dataset` found about one case (None: not known, e.g. unreadable)."""

    id: str
    set: str
    source: str
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    intensity: tuple[float, float] | None = None
    label_values: list[int] | None = None
    foreground: int | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclasses.dataclass
class DatasetReport:
    """The result of :func:`check_dataset`: one :class:`CaseReport` per case, plus data-set-level
    ``problems`` (files that belong to no case) and informative ``notes``."""

    directory: str
    layout: str
    num_classes: int | None
    cases: list[CaseReport]
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def bad_cases(self) -> list[CaseReport]:
        return [c for c in self.cases if c.problems]

    @property
    def ok(self) -> bool:
        """True when no case and no file has a problem."""
        return not self.problems and not self.bad_cases

    def summary(self) -> str:
        bad = len(self.bad_cases)
        text = (
            f"{len(self.cases)} cases checked ({self.layout}, {self.directory}): "
            f"{len(self.cases) - bad} ok, {bad} with problems"
        )
        if self.problems:
            n = len(self.problems)
            text += f"; {n} data set problem{'s' if n > 1 else ''}"
        return text

    def to_dict(self) -> dict:
        """A JSON-ready dict: directory, layout, num_classes, cases, problems, notes, summary."""
        return {
            "directory": self.directory,
            "layout": self.layout,
            "num_classes": self.num_classes,
            "cases": [dataclasses.asdict(c) for c in self.cases],
            "problems": list(self.problems),
            "notes": list(self.notes),
            "summary": {
                "cases": len(self.cases),
                "cases_with_problems": len(self.bad_cases),
                "dataset_problems": len(self.problems),
                "ok": self.ok,
            },
        }

    def format_table(self) -> str:
        """The report as an aligned text table, then notes, problems and the summary line."""
        header = ("set", "id", "shape", "spacing", "intensity", "labels", "foreground", "problems")
        rows = [header] + [_row(c) for c in self.cases]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
        lines = [
            "  ".join([*(cell.ljust(w) for cell, w in zip(r[:-1], widths)), r[-1]]).rstrip()
            for r in rows
        ]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"problem: {p}" for p in self.problems]
        lines.append(self.summary())
        return "\n".join(lines)


def _fmt_number(x: float) -> str:
    return f"{x:.4g}"


def _row(c: CaseReport) -> tuple[str, ...]:
    dash = "-"
    shape = dash if c.shape is None else "x".join(str(n) for n in c.shape)
    spacing = dash if c.spacing is None else "x".join(_fmt_number(s) for s in c.spacing)
    intensity = (
        dash
        if c.intensity is None
        else f"[{_fmt_number(c.intensity[0])}, {_fmt_number(c.intensity[1])}]"
    )
    if c.label_values is None:
        labels = dash
    elif len(c.label_values) <= 8:
        labels = ",".join(str(v) for v in c.label_values)
    else:
        labels = f"{c.label_values[0]}..{c.label_values[-1]} ({len(c.label_values)} values)"
    if c.foreground is None or c.shape is None:
        foreground = dash
    else:
        total = int(np.prod(c.shape[:-1]))
        foreground = f"{c.foreground} ({100.0 * c.foreground / max(total, 1):.2g}%)"
    problems = "; ".join(c.problems) if c.problems else "ok"
    return (c.set, c.id, shape, spacing, intensity, labels, foreground, problems)


@dataclasses.dataclass
class _Entry:
    set: str
    id: str
    source: str
    load: Callable[[], Case]
    labelled: bool


def _label_values(label: np.ndarray) -> list[int]:
    if label.size == 0:
        return []
    if int(label.max()) < 1 << 16:
        counts = np.bincount(label.ravel())
        return np.flatnonzero(counts).tolist()
    return np.unique(label).tolist()


def _inspect(entry: _Entry, num_classes: int | None) -> CaseReport:
    report = CaseReport(id=entry.id, set=entry.set, source=entry.source)
    try:
        case = entry.load()
    except DataError as err:
        report.problems.append(str(err))
        return report
    except MemoryError:
        raise
    except Exception as err:  # a reader bug must not hide the other cases
        report.problems.append(f"{entry.source}: unexpected error ({describe(err)})")
        return report
    image = case.image
    report.shape = tuple(int(n) for n in image.shape)
    report.spacing = tuple(float(s) for s in case.spacing)
    lo, hi = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    report.intensity = (lo, hi)
    if image.size and lo == hi:
        report.problems.append(f"constant image (every value {lo:g})")
    if case.label is None:
        if entry.labelled:
            report.problems.append("no label")
        return report
    values = _label_values(case.label)
    report.label_values = values
    report.foreground = int(np.count_nonzero(case.label))
    if report.foreground == 0:
        report.problems.append("empty label (no foreground)")
    if num_classes is not None:
        outside = [v for v in values if v >= num_classes]
        if outside:
            report.problems.append(f"label values {outside} outside range({num_classes})")
    return report


def detect_layout(directory: str | os.PathLike) -> str:
    """The layout of a data set folder: "decathlon", "la_h5" or "png2d".

    - "decathlon": an ``imagesTr/`` or ``imagesTs/`` folder.
    - "la_h5": sub-folders holding ``mri_norm2.h5``.
    - "png2d": CSV lists (header ``img``) or ``*_img.png`` files at the top level.

    Raises:
      DataError: when the folder does not exist or matches none of them.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    if (directory / "imagesTr").is_dir() or (directory / "imagesTs").is_dir():
        return "decathlon"
    subfolders = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any((p / LA_FILENAME).is_file() for p in subfolders):
        return "la_h5"
    if any(directory.glob("*.csv")) or any(directory.glob("*_img.png")):
        return "png2d"
    raise DataError(
        f"{directory}: unknown data set layout (expected imagesTr/ or imagesTs/ (Decathlon "
        f"NIfTI), <case>/{LA_FILENAME} folders (LA), or letter-B PNGs with CSV lists)"
    )


def _decathlon(directory: Path, report: DatasetReport) -> list[_Entry]:
    dataset_json = directory / "dataset.json"
    if report.num_classes is None and dataset_json.is_file():
        try:
            labels = json.loads(dataset_json.read_text())["labels"]
            report.num_classes = len(labels)
        except (OSError, ValueError, KeyError, TypeError) as err:
            report.problems.append(f"{dataset_json}: cannot read the label list ({describe(err)})")
    entries = []
    for split, folder in (("train", "imagesTr"), ("test", "imagesTs")):
        if not (directory / folder).is_dir():
            continue
        cases, orphans = scan_decathlon(directory, split)
        report.problems += [f"{p}: label has no image of the same name" for p in orphans]
        for c in cases:
            source = str(c.image) if c.label is None else f"{c.image} (label {c.label})"
            load = lambda c=c: load_case(c.image, c.label, case_id=c.id)
            entries.append(_Entry(folder, c.id, source, load, c.label is not None))
    return entries


def _la(directory: Path, report: DatasetReport) -> list[_Entry]:
    if report.num_classes is None:
        report.num_classes = 2
    ids, missing = la_list_cases(directory)
    train, test = set(la_split("train")), set(la_split("test"))
    entries = []
    for case_id in sorted([*ids, *missing]):
        split = "train" if case_id in train else "test" if case_id in test else "-"
        load = lambda i=case_id: load_la_case(directory, i)
        source = str(directory / case_id / LA_FILENAME)
        entries.append(_Entry(split, case_id, source, load, True))
    known = (train | test) & {*ids, *missing}
    report.notes.append(
        f"{len(known & train)} of {len(train)} train and {len(known & test)} of {len(test)} "
        f"test ids of the LA split lists are present; {len(ids) + len(missing) - len(known)} "
        "folders are in neither list"
    )
    return entries


def _csv_is_list(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return True  # reported when read
    return "img" in [cell.strip() for cell in first.strip().split(",")]


def _png(directory: Path, report: DatasetReport) -> list[_Entry]:
    config = directory / "config.json"
    if report.num_classes is None and config.is_file():
        try:
            value = json.loads(config.read_text()).get("num_classes")
            report.num_classes = int(value) if value is not None else None
        except (OSError, ValueError, TypeError, AttributeError) as err:
            report.problems.append(f"{config}: unreadable ({describe(err)})")
    csvs = sorted(directory.glob("*.csv"))
    lists = [p for p in csvs if _csv_is_list(p)]
    report.notes += [
        f"{p}: not a case list (no 'img' column), ignored" for p in csvs if p not in lists
    ]
    entries: list[_Entry] = []
    listed: set[Path] = set()

    def add(set_name: str, case_id: str, image: Path, label: Path | None, labelled: bool):
        source = str(image) if label is None else f"{image} (label {label})"
        load = lambda: load_png_case(image, label, case_id=case_id)
        entries.append(_Entry(set_name, case_id, source, load, labelled))
        listed.update(p.resolve() for p in (image, label) if p is not None)

    if lists:
        names = {p.name for p in lists}
        for path in lists:
            stem = path.name[: -len(".csv")]
            if stem.endswith(".seg"):
                base = stem[: -len(".seg")]
                if not ({f"{base}.csv", f"{base}.img.csv"} & names):
                    report.problems.append(f"{path}: label list without an image list")
                continue
            base = stem[: -len(".img")] if stem.endswith(".img") else stem
            label_csv = directory / f"{base}.seg.csv"
            try:
                cases = png_list_cases(
                    directory, path.name, label_csv.name if label_csv.is_file() else None
                )
            except DataError as err:
                report.problems.append(str(err))
                continue
            for c in cases:
                add(base, c.id, c.image, c.label, c.label is not None)
        unlisted = [
            p for p in directory.rglob("*.png") if p.resolve() not in listed and p.is_file()
        ]
        if unlisted:
            report.notes.append(f"{len(unlisted)} PNG files are in no CSV list")
        return entries
    for image in sorted(directory.glob("*_img.png")):
        label = image.with_name(image.name[: -len("_img.png")] + "_seg.png")
        add(directory.name, png_case_id(image), image, label, True)
    for label in sorted(directory.glob("*_seg.png")):
        if not label.with_name(label.name[: -len("_seg.png")] + "_img.png").is_file():
            report.problems.append(f"{label}: label has no image file")
    return entries


def check_dataset(directory: str | os.PathLike, *, num_classes: int | None = None) -> DatasetReport:
    """Load and validate every case of a data set folder.

    Args:
      directory: a Decathlon-style NIfTI folder, an LA h5 folder or a letter-B PNG folder (see
        :func:`detect_layout`).
      num_classes: expected number of classes; default from ``dataset.json`` (Decathlon),
        ``config.json`` (letter B) or 2 (LA). Label values outside ``range(num_classes)`` are
        problems.

    Returns:
      A :class:`DatasetReport`; ``report.ok`` is False when any case or file has a problem.

    Raises:
      DataError: when the folder does not exist or its layout is not recognised.
    """
    directory = Path(directory)
    layout = detect_layout(directory)
    report = DatasetReport(str(directory), layout, num_classes, [])
    entries = {"decathlon": _decathlon, "la_h5": _la, "png2d": _png}[layout](directory, report)
    report.cases = [_inspect(e, report.num_classes) for e in entries]
    if not report.cases:
        report.problems.append(f"{directory}: no case found")
    return report


def main(
    directory: str | os.PathLike,
    json_path: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
) -> int:
    """Entry point of ``jaxseg data check DIR [--json PATH] [--num-classes K]``.

    Prints the report table to stdout (and writes the report as JSON to ``json_path`` when
    given). Returns 0 when every case is fine, 1 when any case or file has a problem, 2 when the
    folder is missing, its layout is not recognised, or the JSON report cannot be written (a
    ``json_path`` that is a folder is refused before the check; message on stderr).
    """
    if json_path is not None and Path(json_path).is_dir():
        message = f"--json {json_path} is a folder; give a file name"
        print(f"jaxseg data check: {message}", file=sys.stderr)
        return 2
    try:
        report = check_dataset(directory, num_classes=num_classes)
    except DataError as err:
        print(f"jaxseg data check: {err}", file=sys.stderr)
        return 2
    print(report.format_table(), flush=True)
    if json_path is not None:
        try:
            write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
        except OSError as err:
            reason = f"{err.strerror}: {err.filename}" if err.filename else str(err)
            print(f"jaxseg data check: cannot write {json_path} ({reason})", file=sys.stderr)
            return 2
    return 0 if report.ok else 1


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jaxseg.data.check")
    parser.add_argument("directory")
    parser.add_argument("--json", dest="json_path", help="also write the report as JSON")
    parser.add_argument("--num-classes", type=int, help="expected number of classes")
    args = parser.parse_args()
    sys.exit(main(args.directory, args.json_path, num_classes=args.num_classes))
