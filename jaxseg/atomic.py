"""Atomic file writes, the one way jaxseg writes a file that someone may be reading or relying on
(run-directory files, figures, NIfTI outputs, reports, benchmark results).

:func:`atomic_path` hands out a fresh temporary name in the destination folder (keeping the
file's suffixes, so writers that look at them, such as nibabel's, still work) and moves the
finished file into place with ``os.replace``: readers see the old file or the new one, never a
partial one, and a failure (an exception, a full disk) leaves the old file as it was and no
temporary behind. The temporary file is created by the writer with ordinary permissions (the
process umask), unlike ``tempfile.mkstemp``'s owner-only mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_json", "write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The parent folder is created. The caller writes the whole file to the yielded path; when
    the block ends without an exception the file is flushed to disk (``sync``) and renamed to
    ``path``. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex[:12]}.tmp.{path.name}")
    try:
        yield tmp
        if sync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`); returns ``Path(path)``."""
    with atomic_path(path) as tmp, open(tmp, "x") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (sorted keys, trailing newline) to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
