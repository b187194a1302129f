"""Atomic writes: the old file survives a failed write, no temporary is left behind, and new
files get the ordinary permissions of the process umask."""

import json
import os
import stat

import pytest

from jaxseg.atomic import atomic_path, write_json, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_writes_replace_the_file_with_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "sub" / "config.json", {"b": 1, "a": [1, 2]})
        text = write_text(tmp_path / "note.txt", "x\n")
    finally:
        os.umask(umask)
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    for p in (path, text):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]


def test_the_temporary_keeps_the_suffixes(tmp_path):
    with atomic_path(tmp_path / "label.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"data")
    assert (tmp_path / "label.nii.gz").read_bytes() == b"data"
