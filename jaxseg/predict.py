"""Inference on files: ``jaxseg predict`` on one NIfTI image or a folder of them.

Inputs. A file, or a folder of ``.nii``/``.nii.gz`` files: when every name in the folder ends in
an nnU-Net channel suffix (``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``, ...) the files of a case
are its channels, in suffix order, and the case id drops the suffix; otherwise every file is a
one-channel case named by its file name. Every input is checked from its header alone
(:func:`jaxseg.data.nifti.read_header`: rank, size against the file, data type, voxel sizes,
affine; and the channel count) before any inference starts, and the outputs are checked too
(``.nii``/``.nii.gz`` names, no output that is an input or another output, folders
creatable), so a bad request fails at once and writes nothing.

Geometry. Each case goes through the run's preprocessing: resampled to the run's
``data.spacing`` when it has one (image linear) and normalised as the training data were
(``data.intensity``; "keep" means the training data were stored normalised, e.g. the LA h5 files,
so a raw image is z-scored unless ``normalize=False``). The method's test-case preparation runs
(e.g. STIPPLE's positioned prior), the networks predict by sliding windows (optionally averaged
over the 2^N mirrorings of the spatial axes, ``tta``), the outputs are brought back onto the
input's own grid (:func:`jaxseg.data.preprocess.resample_onto`: linear for probabilities and
SDMs) and the label map is taken there (threshold for one channel, argmax for several,
optionally the largest component). Every output file keeps the input's affine and header (qform
and sform codes, units), so it overlays the input in a viewer.

A method whose networks work on a fixed grid of their own (Atlas-ISTN) predicts through its
``predict_source`` instead: the case as read, its outputs on the case's grid.

Writing. A case's outputs are written under temporary names next to their destinations and
moved into place together once all of them are written, so an existing output is replaced only
when its case succeeded, and never half. A case that fails is reported and the others go on;
:func:`predict_paths` returns the per-case results.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxseg.data.case import Case
from jaxseg.data.files import strip_suffix, visible_files
from jaxseg.data.nifti import (
    CHANNEL_NAME,
    is_nifti,
    load_case,
    load_nnunet_case,
    read_header,
    save_nifti,
)
from jaxseg.data.preprocess import resample_onto, zscore
from jaxseg.data.sources import Preprocessing
from jaxseg.errors import DataError
from jaxseg.train.evaluate import probabilities_to_labels
from jaxseg.train.experiment import predict_case
from jaxseg.train.method import Method

__all__ = ["InputCase", "Plan", "list_inputs", "plan", "predict_paths"]


@dataclasses.dataclass(frozen=True)
class InputCase:
    """One case to predict: its id and its image files (one per channel, or one 4D file)."""

    id: str
    files: tuple[Path, ...]


def list_inputs(path: str | os.PathLike) -> list[InputCase]:
    """The cases of a NIfTI file or folder (see the module docstring).

    Raises:
      DataError: naming ``path``, when it does not exist, holds no NIfTI file, or an nnU-Net
        case lacks a channel or repeats one.
    """
    path = Path(path)
    if path.is_file():
        if not is_nifti(path):
            raise DataError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
        return [InputCase(strip_suffix(path.name), (path,))]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    files = [p for p in visible_files(path) if is_nifti(p)]
    if not files:
        raise DataError(f"{path}: the folder holds no .nii or .nii.gz file")
    matches = [CHANNEL_NAME.match(strip_suffix(p.name)) for p in files]
    if not all(matches):
        return [InputCase(strip_suffix(p.name), (p,)) for p in sorted(files)]
    cases: dict[str, dict[int, Path]] = {}
    for p, match in zip(files, matches):
        cases.setdefault(match[1], {})[int(match[2])] = p
    out = []
    for case_id in sorted(cases):
        channels = cases[case_id]
        if sorted(channels) != list(range(len(channels))):
            raise DataError(
                f"{path}: case {case_id!r} has the channel files {sorted(channels)}; expected "
                f"_0000 to _{len(channels) - 1:04d} without gaps"
            )
        out.append(InputCase(case_id, tuple(channels[c] for c in sorted(channels))))
    return out


def _check_header(case: InputCase, channels: int) -> None:
    """Refuse, from the headers alone (:func:`jaxseg.data.nifti.read_header`), an input the
    networks cannot take."""
    shapes = [tuple(read_header(file).get_data_shape()) for file in case.files]
    if len(case.files) > 1 and any(len(shape) != 3 for shape in shapes):
        raise DataError(f"{case.files[0]}: case {case.id!r} has a channel file that is not 3D")
    found = shapes[0][3] if len(shapes[0]) == 4 else len(case.files)
    if len(shapes[0]) == 5 or found != channels:
        raise DataError(
            f"{case.files[0]}: case {case.id!r} has {found} channel(s) ({shapes[0]}); the model "
            f"takes {channels}"
        )


def _read(case: InputCase) -> Case:
    if len(case.files) == 1:
        return load_case(case.files[0], case_id=case.id)
    return load_nnunet_case(case.files, case_id=case.id)


def _normalized(config: Any, case: Case, normalize: bool) -> Case:
    """``case`` on the run's grid, its intensities as the training data's."""
    prep = Preprocessing.from_config(config.data)
    prep = dataclasses.replace(prep, labels=())
    out = prep(case)
    if prep.intensity == "keep" and normalize:
        out = dataclasses.replace(out, image=zscore(out.image, per_channel=True))
    return out


def _stage(outputs: Mapping[Path, tuple[np.ndarray, Path]]) -> None:
    """Write every ``path: (array, reference)`` under a temporary name, then move them all into
    place; on any failure nothing is replaced and the temporary files are removed."""
    staged = []
    try:
        for path, (array, reference) in outputs.items():
            suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
            tmp = path.with_name(f".{path.name}.{os.getpid()}.partial{suffix}")
            staged.append((save_nifti(tmp, array, reference=reference), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()


def _targets(
    cases: Sequence[InputCase], path: Path, output: Path, kind: str, inputs: set[Path]
) -> dict[str, Path]:
    """``case id -> output file``: ``output`` itself for a file input named like a NIfTI file,
    else ``output/<id>.nii.gz``; checked and its folder created."""
    if path.is_file() and is_nifti(output):
        targets = {cases[0].id: output}
    elif output.suffix and not output.is_dir():
        raise ValueError(f"{output}: the {kind} must be a .nii or .nii.gz file or a folder")
    else:
        if output.exists() and not output.is_dir():
            raise ValueError(f"{output}: the {kind} folder is an existing file")
        targets = {case.id: output / f"{case.id}.nii.gz" for case in cases}
    for target in targets.values():
        if target.is_dir():
            raise ValueError(f"{target}: the {kind} file is an existing folder")
        if target.resolve() in inputs:
            raise ValueError(f"{target}: the {kind} would replace an input image")
    return targets


@dataclasses.dataclass(frozen=True)
class Plan:
    """A checked request: the cases and, per output kind ("output", "prob", "sdm"), the file of
    each case."""

    cases: tuple[InputCase, ...]
    targets: Mapping[str, Mapping[str, Path]]


def plan(
    path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    prob: str | os.PathLike | None = None,
    sdm: str | os.PathLike | None = None,
) -> Plan:
    """Check a request before any inference (see the module docstring) and create the output
    folders.

    Raises:
      DataError, ValueError: naming the file, for a bad input (unreadable header, rank, channel
        count, affine, voxel sizes, size) or output (not NIfTI, an input, another output, a
        folder where a file is wanted or the reverse).
    """
    path = Path(path)
    cases = list_inputs(path)
    for case in cases:
        _check_header(case, channels=1)  # every method's networks take one image channel
    inputs = {file.resolve() for case in cases for file in case.files}
    kinds = {"output": output, "prob": prob, "sdm": sdm}
    targets = {
        kind: _targets(cases, path, Path(value), kind, inputs)
        for kind, value in kinds.items()
        if value is not None
    }
    seen: dict[Path, str] = {}
    for kind, files in targets.items():
        for file in files.values():
            if not is_nifti(file):
                raise ValueError(f"{file}: the {kind} must be a .nii or .nii.gz file or a folder")
            if file.resolve() in seen:
                raise ValueError(f"{file}: both the {seen[file.resolve()]} and the {kind}")
            seen[file.resolve()] = kind
    for files in targets.values():
        for file in files.values():
            file.parent.mkdir(parents=True, exist_ok=True)
    return Plan(tuple(cases), targets)


def predict_paths(
    method: Method,
    config: Any,
    nets: Any,
    request: Plan,
    *,
    state: Any = None,
    tta: bool = False,
    largest_component: bool = False,
    normalize: bool = True,
    report: Callable[[str], None] = print,
) -> dict[str, str]:
    """Predict every case of a checked ``request`` (:func:`plan`) with the trained networks
    ``nets`` (and ``state``, for methods that prepare their test cases); see the module
    docstring. Progress and failures go to ``report``; a failed case does not stop the others.

    Returns:
      ``{case id: "ok" or the error message}``.
    """
    threshold = float(config.eval.get("threshold", 0.5))
    spacing = tuple(config.data.get("spacing", ())) or None
    cases, targets = request.cases, request.targets
    results = {}
    for k, case in enumerate(cases, 1):
        start = time.perf_counter()
        try:
            source = _read(case)
            if method.predict_source is not None:
                out = method.predict_source(config, state, source)
            else:
                net_case = _normalized(config, source, normalize)
                out = predict_case(method, config, nets, net_case.image, state=state, tta=tta)
                if spacing is not None and net_case.spatial_shape != source.spatial_shape:
                    out = {name: resample_onto(v, spacing, source) for name, v in out.items()}
            if "sdm" in targets and "sdm" not in out:
                raise ValueError(f"method {config.method!r} predicts no SDM")
            labels = probabilities_to_labels(
                out["prob"], threshold=threshold, largest_component=largest_component
            )
            arrays = {"output": labels.astype(np.uint8), "prob": out["prob"], "sdm": out.get("sdm")}
            writes = {}
            for kind, files in targets.items():
                value = arrays[kind]
                value = value[..., 0] if value.ndim == 4 and value.shape[-1] == 1 else value
                writes[files[case.id]] = (value, case.files[0])
            _stage(writes)
        except (DataError, ValueError, OSError) as err:
            results[case.id] = str(err)
            report(f"[{k}/{len(cases)}] {case.id}: failed: {err}")
            continue
        results[case.id] = "ok"
        took = time.perf_counter() - start
        report(
            f"[{k}/{len(cases)}] {case.id}: {int(np.count_nonzero(labels))} foreground voxels, "
            f"{took:.1f} s -> {targets['output'][case.id]}"
        )
    return results
