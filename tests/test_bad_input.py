"""The bad-input corpus: every case is made here by code (no binary fixtures) and must end in a
clear error through the command line: exit status 2, stderr one line that names the file and the
problem, no traceback, and nothing of what existed before changed.

Each entry: ``(files made in the folder, arguments, what the message must say)``. The messages
of the readers are tested in detail beside them (test_data_readers.py, test_interop.py,
test_predict.py, test_data_check.py); this corpus holds the command-line contract. Add every bad
input found to it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from jaxseg.cli import main
from jaxseg.train.config import config_to_dict, load_config


def _nifti(path: Path, shape=(8, 8, 8), dtype=np.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype), np.eye(4)), path)
    return path


def _lying_header(path: Path, shape: tuple[int, ...], data_bytes: int) -> Path:
    """A NIfTI file whose header claims ``shape`` (float32) but holds ``data_bytes`` bytes."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    payload = header.binaryblock + b"\0" * 4 + b"\0" * data_bytes
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
    return path


def _run_dir(root: Path) -> Path:
    """A run directory as far as predict reads it before the networks: its config."""
    run = root / "run"
    run.mkdir()
    config = load_config("supervised:smoke")
    (run / "config.json").write_text(json.dumps(config_to_dict(config)))
    return run


def _reference_weights(path: Path, *, drop: bool = False) -> Path:
    """The reference PyTorch V-Net's checkpoint (16 filters; ``drop``: one entry missing)."""
    torch = pytest.importorskip("torch")
    import torch_reference

    torch.manual_seed(0)
    state = torch_reference.build("vnet").state_dict()
    if drop:
        state.pop(next(iter(state)))
    torch.save(state, path)
    return path


def _weights(name: str) -> Callable[[Path], list[str]]:
    """predict with reference weights for the 4-filter smoke config."""
    return lambda root: [
        "predict", "--weights", name, "--config", "supervised:smoke", "-i", "scan.nii.gz",
        "-o", "out.nii.gz",
    ]  # fmt: skip


def _predict(*extra: str) -> Callable[[Path], list[str]]:
    return lambda root: ["predict", "--workdir", str(_run_dir(root)), *extra]


CORPUS: dict[str, tuple[Callable[[Path], object], Callable[[Path], list[str]], str]] = {
    "predict: missing input": (
        lambda root: None,
        _predict("-i", "absent.nii.gz", "-o", "out.nii.gz"),
        "absent.nii.gz: no such file or folder",
    ),
    "predict: input not NIfTI": (
        lambda root: (root / "scan.png").write_bytes(b"\x89PNG"),
        _predict("-i", "scan.png", "-o", "out.nii.gz"),
        "scan.png: not a NIfTI file",
    ),
    "predict: 4D time series": (
        lambda root: _nifti(root / "series.nii.gz", (8, 8, 8, 3)),
        _predict("-i", "series.nii.gz", "-o", "out.nii.gz"),
        "has 3 channel(s)",
    ),
    "predict: header claims 32767^3 voxels": (
        lambda root: _lying_header(root / "huge.nii", (32767,) * 3, 1000),
        _predict("-i", "huge.nii", "-o", "out.nii.gz"),
        "huge.nii: the header claims",
    ),
    "predict: header claims 2 GB in a 4 KB file": (
        lambda root: _lying_header(root / "short.nii", (1024, 1024, 512), 4000),
        _predict("-i", "short.nii", "-o", "out.nii.gz"),
        "short.nii: truncated or corrupt: the header claims 2147483648 bytes",
    ),
    "predict: output is the input": (
        lambda root: _nifti(root / "scan.nii.gz"),
        _predict("-i", "scan.nii.gz", "-o", "scan.nii.gz"),
        "would replace an input image",
    ),
    "predict: prob is the output": (
        lambda root: _nifti(root / "scan.nii.gz"),
        _predict("-i", "scan.nii.gz", "-o", "seg.nii.gz", "--prob", "seg.nii.gz"),
        "both the output and the prob",
    ),
    "predict: output file is a folder": (
        lambda root: (
            _nifti(root / "in" / "a.nii.gz"),
            (root / "out" / "a.nii.gz").mkdir(parents=True),
        ),
        _predict("-i", "in", "-o", "out"),
        "a.nii.gz: the output file is an existing folder",
    ),
    "predict: empty .pth": (
        lambda root: (_nifti(root / "scan.nii.gz"), (root / "w.pth").write_bytes(b"")),
        _weights("w.pth"),
        "w.pth: not a readable PyTorch checkpoint",
    ),
    "predict: .pth of another width": (
        lambda root: (_nifti(root / "scan.nii.gz"), _reference_weights(root / "w.pth")),
        _weights("w.pth"),
        "w.pth: the reference V-Net's parameters do not match the network of config",
    ),
    "predict: .pth with a missing entry": (
        lambda root: (
            _nifti(root / "scan.nii.gz"),
            _reference_weights(root / "w.pth", drop=True),
        ),
        _weights("w.pth"),
        "w.pth: state_dict does not match the reference 'vnet': 1 missing entries",
    ),
    "data check: missing folder": (
        lambda root: None,
        lambda root: ["data", "check", "absent"],
        "absent: not a directory",
    ),
    "data check: --json is a folder": (
        lambda root: (_nifti(root / "ds" / "imagesTr" / "a.nii.gz"), (root / "report").mkdir()),
        lambda root: ["data", "check", "ds", "--json", "report"],
        "--json report is a folder",
    ),
    "data check: broken symbolic link": (
        lambda root: (
            _nifti(root / "ds" / "imagesTr" / "a.nii.gz"),
            (root / "ds" / "imagesTr" / "b.nii.gz").symlink_to(root / "gone.nii.gz"),
        ),
        lambda root: ["data", "check", "ds"],
        "b.nii.gz: a broken symbolic link",
    ),
    "evaluate: missing reference folder": (
        lambda root: _nifti(root / "pred" / "a.nii.gz", dtype=np.uint8),
        lambda root: ["evaluate", "--pred", "pred", "--ref", "absent"],
        "absent: the reference folder does not exist",
    ),
    "train: unknown config key": (
        lambda root: None,
        lambda root: ["train", "supervised:smoke", "--workdir", "run", "--set", "nosuch.key=1"],
        "override 'nosuch.key=1': no config section 'nosuch'",
    ),
}


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): None if p.is_dir() or not p.exists() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_input_gives_one_clear_line_and_changes_nothing(name, tmp_path, monkeypatch, capsys):
    make, argv, message = CORPUS[name]
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    args = argv(tmp_path)
    before = _snapshot(tmp_path)
    assert main(args) == 2, name
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxseg "), captured.err
    assert message in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(tmp_path) == before, "a bad request changed files"
