"""Data sources: a registry from ``config.data.source`` to the cases of an experiment.

Every source reads the ``data`` section of a config (an ``ml_collections.ConfigDict``, or any
mapping with ``.get``) and returns a :class:`Split`: labelled, unlabelled and validation training
cases and one or more named test sets. The engine never names a source; it calls
:func:`load_split`.

Keys of ``config.data`` (the base config holds them all; a missing key takes the default in
brackets, so older configs still load):

``source``       "la_h5", "synthetic", "nifti" or "png2d" (:data:`SOURCES`).
``root``         the data folder ("" for "synthetic") [""].
``labelled``     number of labelled training cases (-1: all of them but the ``val`` ones) [-1].
``unlabelled``   number of unlabelled training cases after the labelled ones (-1: all the rest)
                 [-1].
``val``          validation cases taken from the end of the non-labelled training cases [0].
``test``         test cases: for sources without a test split of their own, the number of
                 training cases held out as the test set by the seeded split; for sources with
                 fixed test lists, a cap (-1: all) [-1].
``split_seed``   seed of the split of sources with no fixed order [0].
``split_file``   "" or a JSON file ``{"labelled": [ids], "unlabelled": [...], "val": [...],
                 "test": {"<set>": [ids]}}`` that fixes the split (the run directory's
                 ``split.json`` has this layout, :meth:`Split.ids`) [""].
``labels``       () to keep the label map; (k, ...) for the binary map ``label in labels``
                 (one-vs-rest; e.g. (1, 2) merges pancreas and tumour of MSD Task07) [()].
``spacing``      () to keep each case's grid; (s_1, ..., s_N) mm to resample to that spacing
                 (image linear, label nearest); metrics use the spacing of the cases [()].
``intensity``    "keep", "zscore" (per case and channel) or "clip_zscore" with ``clip = (lo, hi)``
                 (CT: clip to a HU window, then z-score) ["keep"].
``folds``, ``fold``  ``nifti`` without a test split of its own: ``folds >= 2`` makes the test
                 set part ``fold`` of the seeded order cut into ``folds`` parts (k-fold
                 cross-validation, STIPPLE's protocol: one run per fold; ``data.test`` is then
                 not read); 0: off [0, 0].
``cache``        keep every case of a file source in memory once read and preprocessed (worth
                 it when reading and resampling a case cost about as much as a training step;
                 memory: the preprocessed volumes of all cases read) [False].
``synthetic``    {"family": "la_like" | "cardiac_like" | "abdominal_ct_like" | "letter_b"
                  ("" or missing: "la_like"), "train": n, "val": n, "test": n,
                  "shape": (...), "spacing": (...)}.

Training parts (every source): from the source's ordered list of training ids the first
``labelled`` are labelled; of the rest, the last ``val`` are the validation cases and the first
``unlabelled`` of what remains are unlabelled. Unlabelled cases keep their labels when the files
have them (the pipelines do not use them). A count larger than what exists raises
:class:`jaxseg.errors.DataError` naming ``root``.

Sources:

``la_h5``       ``<root>/<id>/mri_norm2.h5``; the shipped LA lists (:func:`la_split`): the train
                list cut as above (so the labelled ids are those of :func:`la_partition`), the 20
                test ids (the first ``test``) as the test set ``"test"``.
``synthetic``   the built-in generators (:func:`jaxseg.data.synthetic.dataset`) in memory, from
                disjoint seed ranges (:data:`SYNTHETIC_SEEDS`): ``synthetic.train`` training cases
                cut as above (``data.val`` is not read), ``synthetic.val`` validation cases,
                ``synthetic.test`` test cases (``data.test`` is not read). ``shape`` and
                ``spacing`` go to the generator when non-empty; ``letter_b`` takes only
                ``shape`` (2D, 1 mm pixels; default 128 x 128) and gives the test sets
                ``"clean"`` and ``"corrupt"`` (the same letters with clutter), the others
                ``"test"``.
``nifti``       a Medical Segmentation Decathlon folder (``dataset.json``, ``imagesTr/``,
                ``labelsTr/``, ``imagesTs/``) or an nnU-Net raw folder (``_0000`` channel
                suffixes, channels stacked last, ids without the suffix); the layout is detected
                by :func:`jaxseg.data.layouts.nifti_layout`. The test set ``"test"`` is
                ``imagesTs/`` + ``labelsTs/`` when both hold files (the first ``test`` of them by
                name). The training ids, sorted, are put in the order
                ``numpy.random.default_rng(split_seed).permutation``; without a test split of
                their own the first ``test`` (>= 0) of that order are the test set, and the rest,
                in that order, give the training parts.
``png2d``       the letter-B PNG layout: training cases from ``train.csv``/``train.seg.csv`` in
                list order; test sets ``"clean"`` from ``val.csv``/``val.seg.csv`` and
                ``"corrupt"`` from ``test.corrupt.csv``/``test.corrupt.seg.csv`` (the first
                ``test`` of each).

A fixed split (``load_split(data, ids=...)``, which wins, or ``split_file``) selects every part
by id from the cases the source lists; an id it does not list raises DataError naming the id and
``root``. Synthetic cases cannot be chosen: the ids must equal the generated ones.

Preprocessing (:class:`Preprocessing`) is applied to every case, in this order: ``labels``
(one-vs-rest), ``spacing`` (resampling), ``intensity``. Cases read from files are loaded lazily:
each part is a sequence that reads and preprocesses case ``i`` when ``part[i]`` is asked for
(slices stay lazy, and the sequence pickles for grain's worker processes).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxseg.data import synthetic
from jaxseg.data.case import Case
from jaxseg.data.files import describe, require_file, visible_files
from jaxseg.data.la_h5 import la_list_cases, la_split, load_la_case
from jaxseg.data.layouts import decathlon_cases, nifti_layout, nnunet_cases
from jaxseg.data.nifti import load_case, load_nnunet_case
from jaxseg.data.png2d import load_png_case, png_list_cases
from jaxseg.data.preprocess import resample_to_spacing, zscore
from jaxseg.errors import DataError

__all__ = ["DEFAULTS", "SOURCES", "SYNTHETIC_SEEDS", "Preprocessing", "Split", "load_split"]

PARTS = ("labelled", "unlabelled", "val")
"""The training parts of a :class:`Split`, in the order of :meth:`Split.ids`."""

SYNTHETIC_SEEDS = {"train": 0, "val": 10_000, "test": 20_000}
"""Seed of the first synthetic case of each part (case ``i`` has seed ``seed + i``)."""

INTENSITIES = ("keep", "zscore", "clip_zscore")

DEFAULTS = {
    "root": "",
    "labelled": -1,
    "unlabelled": 0,
    "val": 0,
    "test": -1,
    "split_seed": 0,
    "split_file": "",
    "labels": (),
    "spacing": (),
    "intensity": "keep",
    "clip": (),
    "cache": False,
    "folds": 0,
    "fold": 0,
}
"""The value of every ``data`` key a source reads when the section lacks it (the engine's base
config starts from these)."""

_PNG_LISTS = {
    "train": ("train.csv", "train.seg.csv"),
    "clean": ("val.csv", "val.seg.csv"),
    "corrupt": ("test.corrupt.csv", "test.corrupt.seg.csv"),
}


def _get(data: Any, key: str) -> Any:
    return data.get(key, DEFAULTS[key])


@dataclasses.dataclass(frozen=True)
class Split:
    """The cases of an experiment: training parts and named test sets.

    Attributes:
      labelled, unlabelled, val: sequences of :class:`Case` (lazy for file sources).
      test_sets: test set name -> sequence of cases, e.g. ``{"test": ...}`` or
        ``{"clean": ..., "corrupt": ...}``.
    """

    labelled: Sequence[Case]
    unlabelled: Sequence[Case]
    val: Sequence[Case]
    test_sets: Mapping[str, Sequence[Case]]

    def ids(self) -> dict[str, Any]:
        """``{"labelled": [ids], "unlabelled": [...], "val": [...], "test": {set: [ids]}}``.

        JSON-ready (the run directory's ``split.json``); no file is read to list them.
        """
        out: dict[str, Any] = {part: _case_ids(getattr(self, part)) for part in PARTS}
        out["test"] = {name: _case_ids(cases) for name, cases in self.test_sets.items()}
        return out


def _case_ids(cases: Sequence[Case]) -> list[str]:
    return list(cases.ids) if isinstance(cases, _LazyCases) else [c.id for c in cases]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The preprocessing every source applies to its cases (``data.labels``, ``spacing``,
    ``intensity``, ``clip``; see the module docstring), callable as ``case -> case``.

    In this order: the label map becomes ``isin(label, labels)`` as 0/1 int32 (when ``labels``
    is non-empty and the case has a label); the case is resampled to ``spacing`` mm (when
    non-empty and different from the case's; :func:`resample_to_spacing`, image linear, label
    nearest, affine updated); the image ``(*S, C)`` is z-scored per channel (``"zscore"``), or
    clipped to ``clip = (lo, hi)`` and then z-scored per channel (``"clip_zscore"``, that is
    :func:`clip_and_zscore` per channel).
    """

    labels: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    intensity: str = "keep"
    clip: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(int(k) for k in self.labels))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "clip", tuple(float(c) for c in self.clip))
        if not all(np.isfinite(s) and s > 0 for s in self.spacing):
            raise ValueError(f"data.spacing must be positive mm values, got {self.spacing}")
        if self.intensity not in INTENSITIES:
            raise ValueError(f"data.intensity must be one of {INTENSITIES}, got {self.intensity!r}")
        if self.intensity == "clip_zscore" and not (
            len(self.clip) == 2 and self.clip[0] < self.clip[1]
        ):
            raise ValueError(f"data.clip must be (low, high) with low < high, got {self.clip}")

    @classmethod
    def from_config(cls, data: Any) -> Preprocessing:
        """The preprocessing of a config's ``data`` section."""
        keys = ("labels", "spacing", "intensity", "clip")
        return cls(**{key: _get(data, key) for key in keys})

    def __call__(self, case: Case) -> Case:
        if self.labels and case.label is not None:
            label = np.isin(case.label, self.labels).astype(np.int32)
            case = dataclasses.replace(case, label=label)
        if self.spacing:
            if len(self.spacing) != len(case.spacing):
                raise ValueError(
                    f"{case.source or case.id}: data.spacing {self.spacing} has "
                    f"{len(self.spacing)} values for a {len(case.spacing)}D case"
                )
            if not np.allclose(case.spacing, self.spacing, rtol=1e-6, atol=0.0):
                case = resample_to_spacing(case, self.spacing, order=1)
        if self.intensity != "keep":
            image = case.image if self.intensity == "zscore" else np.clip(case.image, *self.clip)
            case = dataclasses.replace(case, image=zscore(image, per_channel=True))
        return case


class _LazyCases(Sequence):
    """Cases read and preprocessed when indexed; slices stay lazy; picklable. With a ``cache``
    dict (shared by slices) each case is read once and kept, keyed by id."""

    def __init__(
        self,
        ids: Sequence[str],
        readers: Sequence[Callable[[], Case]],
        prep,
        cache: dict[str, Case] | None = None,
    ):
        self.ids, self._readers, self._prep = list(ids), list(readers), prep
        self._cache = cache

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return _LazyCases(self.ids[index], self._readers[index], self._prep, self._cache)
        if self._cache is None:
            return self._prep(self._readers[index]())
        case_id = self.ids[index]
        if case_id not in self._cache:
            self._cache[case_id] = self._prep(self._readers[index]())
        return self._cache[case_id]

    def __repr__(self) -> str:
        return f"_LazyCases({len(self.ids)} cases: {self.ids[:3]}{' ...' * (len(self) > 3)})"


@dataclasses.dataclass(frozen=True)
class _Listing:
    """The cases a file source lists: training and per-test-set ``id -> reader``."""

    where: str
    train: dict[str, Callable[[], Case]]
    tests: dict[str, dict[str, Callable[[], Case]]]

    def split(self, ids: Mapping[str, Any], data: Any) -> Split:
        """The lazy :class:`Split` of the checked ``ids`` (see :func:`_checked_ids`), its cases
        preprocessed as ``data`` says and kept once read with ``data.cache`` (a cache per
        part)."""
        prep, cache = Preprocessing.from_config(data), bool(_get(data, "cache"))
        unknown_sets = sorted(set(ids["test"]) - set(self.tests))
        if unknown_sets:
            raise DataError(
                f"{self.where}: no test set {unknown_sets[0]!r} (the source has "
                f"{sorted(self.tests)})"
            )

        def select(readers: dict, wanted: list[str], part: str) -> _LazyCases:
            for case_id in wanted:
                if case_id not in readers:
                    raise DataError(
                        f"{self.where}: no case {case_id!r} (asked for in {part}); "
                        f"{len(readers)} cases are listed there"
                    )
            return _LazyCases(wanted, [readers[i] for i in wanted], prep, {} if cache else None)

        parts = {part: select(self.train, ids[part], part) for part in PARTS}
        tests = {
            name: select(self.tests[name], wanted, f"test set {name!r}")
            for name, wanted in ids["test"].items()
        }
        return Split(**parts, test_sets=tests)


def _catalogue(files: Sequence, read: Callable, where: str | Path) -> dict[str, Callable]:
    readers: dict[str, Callable] = {}
    for entry in files:
        if entry.id in readers:
            raise DataError(f"{where}: case id {entry.id!r} is listed twice")
        readers[entry.id] = read(entry)
    return readers


def _partition(
    ids: Sequence[str], *, labelled: int, unlabelled: int, val: int, where: str
) -> dict[str, list[str]]:
    """Labelled (first), validation (last of the rest) and unlabelled ids of ordered ``ids``."""
    ids, n = list(ids), len(ids)
    if not 0 <= val <= n:
        raise DataError(f"{where}: data.val = {val} validation cases asked for, {n} cases exist")
    n_labelled = n - val if labelled < 0 else labelled
    if n_labelled + val > n:
        raise DataError(
            f"{where}: data.labelled = {labelled} and data.val = {val} need {n_labelled + val} "
            f"training cases, {n} exist"
        )
    rest = ids[n_labelled : n - val]
    if unlabelled > len(rest):
        raise DataError(
            f"{where}: data.unlabelled = {unlabelled}, but {len(rest)} training cases are left "
            "after the labelled and validation ones"
        )
    return {
        "labelled": ids[:n_labelled],
        "unlabelled": rest if unlabelled < 0 else rest[:unlabelled],
        "val": ids[n - val :],
    }


def _counts(data: Any) -> dict[str, int]:
    return {part: int(_get(data, part)) for part in PARTS}


def _cap(ids: Sequence[str], n: int, where: str | Path) -> list[str]:
    if n < 0:
        return list(ids)
    if n > len(ids):
        raise DataError(f"{where}: data.test = {n} test cases asked for, {len(ids)} are listed")
    return list(ids[:n])


def _root(data: Any, what: str) -> Path:
    root = _get(data, "root")
    if not root:
        raise ValueError(f"data.root must name the {what} (set it with --set data.root=DIR)")
    if not Path(root).is_dir():
        raise DataError(f"{root}: {what} not found (data.root)")
    return Path(root)


def _la_h5(data: Any, *, ids: Mapping[str, Any] | None) -> Split:
    root = _root(data, "LA data folder")
    readers = {i: functools.partial(load_la_case, root, i) for i in la_list_cases(root)[0]}
    if ids is None:
        ids = _partition(la_split("train"), **_counts(data), where=str(root))
        ids["test"] = {"test": _cap(la_split("test"), int(_get(data, "test")), root)}
    return _Listing(str(root), readers, {"test": readers}).split(ids, data)


def _synthetic(data: Any, *, ids: Mapping[str, Any] | None) -> Split:
    s = data.get("synthetic") or {}
    family = s.get("family") or "la_like"
    if family not in synthetic.GENERATORS:
        raise ValueError(
            f"data.synthetic.family must be one of {list(synthetic.GENERATORS)}, got {family!r}"
        )
    options: dict[str, Any] = {}
    if s.get("shape"):
        options["shape"] = tuple(int(n) for n in s.get("shape"))
    if family != "letter_b" and s.get("spacing"):
        options["spacing"] = tuple(float(x) for x in s.get("spacing"))
    prep = Preprocessing.from_config(data)

    def make(part: str, n: int, **extra) -> list[Case]:
        cases = synthetic.dataset(family, int(n), seed=SYNTHETIC_SEEDS[part], **options, **extra)
        return [prep(c) for c in cases]

    train = {c.id: c for c in make("train", s.get("train", 0))}
    parts = _partition(list(train), **{**_counts(data), "val": 0}, where="synthetic data")
    n_test = s.get("test", 0)
    if family == "letter_b":
        tests = {"clean": make("test", n_test), "corrupt": make("test", n_test, corrupt=True)}
    else:
        tests = {"test": make("test", n_test)}
    split = Split(
        labelled=[train[i] for i in parts["labelled"]],
        unlabelled=[train[i] for i in parts["unlabelled"]],
        val=make("val", s.get("val", 0)),
        test_sets=tests,
    )
    if ids is not None:
        _same_ids(ids, split.ids(), family)
    return split


def _same_ids(given: Mapping[str, Any], made: Mapping[str, Any], family: str) -> None:
    pairs = [(part, given[part], made[part]) for part in PARTS]
    for name in sorted(set(given["test"]) | set(made["test"])):
        pairs.append((f"test set {name!r}", given["test"].get(name), made["test"].get(name)))
    for part, want, have in pairs:
        if want != have:
            unknown = [i for i in want or () if i not in (have or ())]
            detail = f"unknown id {unknown[0]!r}" if unknown else f"{want} instead of {have}"
            raise DataError(
                f"synthetic data ({family}): {part} of the split differs from the generated "
                f"cases ({detail}); synthetic cases are fixed by data.synthetic, data.labelled "
                "and data.unlabelled"
            )


def _has_nifti(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.name.lower().endswith((".nii.gz", ".nii")) for p in visible_files(folder)
    )


def _nifti(data: Any, *, ids: Mapping[str, Any] | None) -> Split:
    root = _root(data, "NIfTI data folder")
    if nifti_layout(root) == "nnunet":
        list_cases = nnunet_cases

        def read(f):
            return functools.partial(load_nnunet_case, f.images, f.label, case_id=f.id)
    else:
        list_cases = decathlon_cases

        def read(f):
            return functools.partial(load_case, f.image, f.label, case_id=f.id)

    train = _catalogue(list_cases(root, split="train"), read, root)
    fixed = _has_nifti(root / "imagesTs") and _has_nifti(root / "labelsTs")
    test = _catalogue(list_cases(root, split="test"), read, root) if fixed else train
    if ids is None:
        order = sorted(train)
        permutation = np.random.default_rng(int(_get(data, "split_seed"))).permutation(len(order))
        order = [order[i] for i in permutation]
        n_test, folds = int(_get(data, "test")), int(_get(data, "folds"))
        if folds:
            test_ids, order = _fold(order, folds, int(_get(data, "fold")), root)
        elif fixed:
            test_ids = _cap(list(test), n_test, root / "imagesTs")
        elif n_test < 0:
            raise ValueError(
                f"{root}: no imagesTs/ + labelsTs/, so data.test must be the number of training "
                f"cases held out as the test set (>= 0), got {n_test}"
            )
        else:
            test_ids, order = _cap(order, n_test, root / "imagesTr"), order[n_test:]
        ids = {**_partition(order, **_counts(data), where=str(root)), "test": {"test": test_ids}}
    return _Listing(str(root), train, {"test": test}).split(ids, data)


def _fold(order: list[str], folds: int, fold: int, root: Path) -> tuple[list[str], list[str]]:
    """``(test ids, training ids)`` of fold ``fold`` of ``folds``: the ordered ids cut into
    ``folds`` contiguous parts of sizes differing by at most one (``numpy.array_split``), part
    ``fold`` held out."""
    if not (2 <= folds <= len(order) and 0 <= fold < folds):
        raise ValueError(
            f"{root}: data.folds = {folds} and data.fold = {fold} must satisfy 2 <= folds <= "
            f"{len(order)} (the training cases) and 0 <= fold < folds"
        )
    parts = np.array_split(np.arange(len(order)), folds)
    held = set(parts[fold].tolist())
    return [order[i] for i in parts[fold]], [c for i, c in enumerate(order) if i not in held]


def _png2d(data: Any, *, ids: Mapping[str, Any] | None) -> Split:
    root = _root(data, "PNG data folder")

    def read(f):
        return functools.partial(load_png_case, f.image, f.label, case_id=f.id)

    lists = {
        name: _catalogue(png_list_cases(root, images, labels), read, root / images)
        for name, (images, labels) in _PNG_LISTS.items()
    }
    train = lists.pop("train")
    if ids is None:
        ids = _partition(list(train), **_counts(data), where=str(root))
        n_test = int(_get(data, "test"))
        ids["test"] = {
            name: _cap(list(cases), n_test, root / _PNG_LISTS[name][0])
            for name, cases in lists.items()
        }
    return _Listing(str(root), train, lists).split(ids, data)


SOURCES: dict[str, Callable[..., Split]] = {
    "la_h5": _la_h5,
    "synthetic": _synthetic,
    "nifti": _nifti,
    "png2d": _png2d,
}
"""``data.source`` -> ``loader(data, *, ids) -> Split``; ``ids`` is None (the source's own
split) or a split checked by :func:`load_split`."""


def _checked_ids(ids: Any, where: str) -> dict[str, Any]:
    """A copy of ``ids`` in the layout of :meth:`Split.ids`, or DataError naming ``where``."""
    if not isinstance(ids, Mapping):
        raise DataError(f"{where}: a split must be a JSON object, got {type(ids).__name__}")
    missing = [key for key in (*PARTS, "test") if key not in ids]
    if missing:
        raise DataError(f"{where}: the split lacks {missing}")

    def id_list(value: Any, part: str) -> list[str]:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise DataError(f"{where}: {part} must be a list of case ids, got {value!r}")
        if not all(isinstance(i, str) for i in value):
            raise DataError(f"{where}: {part} must hold case ids (strings), got {value!r}")
        if len(set(value)) != len(value):
            twice = next(i for i in value if value.count(i) > 1)
            raise DataError(f"{where}: case {twice!r} is listed twice in {part}")
        return list(value)

    out: dict[str, Any] = {part: id_list(ids[part], part) for part in PARTS}
    if not isinstance(ids["test"], Mapping):
        raise DataError(f"{where}: test must map test set names to id lists")
    out["test"] = {str(n): id_list(v, f"test set {n!r}") for n, v in ids["test"].items()}
    seen: dict[str, str] = {}
    for part in PARTS:
        for case_id in out[part]:
            if case_id in seen:
                raise DataError(f"{where}: case {case_id!r} is in both {seen[case_id]} and {part}")
            seen[case_id] = part
    return out


def load_split(data: Any, *, ids: Mapping[str, Any] | None = None) -> Split:
    """The :class:`Split` of a config's ``data`` section.

    Args:
      data: the ``data`` section (``ConfigDict`` or mapping; keys in the module docstring).
      ids: a fixed split in the layout of :meth:`Split.ids` (e.g. a run directory's
        ``split.json``); it wins over ``data.split_file``. None: ``data.split_file`` when set,
        else the source's own split.

    Raises:
      ValueError: for an unknown ``data.source`` or bad settings (e.g. no ``data.root``).
      DataError: naming the file or folder, for missing or bad data, counts larger than what
        exists, a malformed split, or a split id the source does not list.
    """
    source = data.get("source", "")
    if source not in SOURCES:
        raise ValueError(f"data.source must be one of {sorted(SOURCES)}, got {source!r}")
    if ids is not None:
        ids = _checked_ids(ids, "the split given as ids=")
    elif _get(data, "split_file"):
        path = require_file(_get(data, "split_file"), "split file")
        try:
            ids = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise DataError(f"{path}: unreadable split file ({describe(err)})") from err
        ids = _checked_ids(ids, str(path))
    return SOURCES[source](data, ids=ids)
