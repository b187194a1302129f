"""Run-directory files: ``metrics.jsonl``, ``config.json`` and the training-curve figure.

``metrics.jsonl`` holds one JSON object per logged step, ``{"step": int, name: float, ...}``,
appended as training goes. On resume from a checkpoint of step ``s`` the loop first calls
:meth:`MetricsWriter.truncate_after` ``(s)``, which drops the lines of steps after ``s`` (logged
by the interrupted run after its last checkpoint and about to be logged again), so every step
appears once.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from jaxseg import viz
from jaxseg.atomic import write_json, write_text

__all__ = ["MetricsWriter", "plot_curves", "read_metrics", "write_json_atomic"]


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (:func:`jaxseg.atomic.write_json`)."""
    write_json(path, obj)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (``[]`` if it does not exist).

    A last line cut short by a crash is ignored; any other unreadable line raises ValueError.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:  # an unterminated last line: an interrupted write
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON: {err}") from err
    return records


class MetricsWriter:
    """Appends ``{"step": step, **metrics}`` lines to a ``metrics.jsonl`` file."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append one line; values are converted to float (non-finite ones to null)."""
        record: dict[str, Any] = {"step": int(step)}
        for name, value in metrics.items():
            value = float(value)
            record[name] = value if math.isfinite(value) else None
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop the lines with ``"step" > step`` (atomically rewriting the file)."""
        records = read_metrics(self.path)
        kept = [r for r in records if int(r["step"]) <= step]
        if len(kept) == len(records) and _ends_with_newline(self.path):
            return
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


class TensorBoardWriter:
    """Writes the same records as :class:`MetricsWriter` as TensorBoard scalars in ``directory``.

    Optional: it needs the ``tensorboardX`` package (``pip install tensorboardX``). A resumed run
    appends a new event file; TensorBoard shows the steps logged twice (before an interruption
    and after the restart) as two points of the same step.
    """

    def __init__(self, directory: str | os.PathLike):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "TensorBoard logging needs the tensorboardX package: pip install tensorboardX"
            ) from err
        self._writer = SummaryWriter(os.fspath(directory))

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Add every finite value of ``metrics`` as a scalar at ``step``."""
        for name, value in metrics.items():
            value = float(value)
            if math.isfinite(value):
                self._writer.add_scalar(name, value, int(step))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _ends_with_newline(path: str) -> bool:
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return True
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def plot_curves(workdir: str | os.PathLike, *, filename: str = "curves.png") -> str:
    """Plot every metric of ``<workdir>/metrics.jsonl`` against the step
    (:func:`jaxseg.viz.curves_figure`): one panel per metric name, written to
    ``<workdir>/figures/<filename>``. Returns the path written.

    Raises:
      FileNotFoundError: if there are no metrics.
    """
    workdir = os.fspath(workdir)
    path = os.path.join(workdir, "metrics.jsonl")
    records = read_metrics(path)
    if not records:
        raise FileNotFoundError(f"no metrics in {path}")
    out = os.path.join(workdir, "figures", filename)
    viz.curves_figure(records, out)
    return out
