"""Checkpoints of the training state and the data iterator state, with Orbax.

Layout: ``<directory>/<step>/state`` (the state pytree, ``ocp.args.StandardSave``) and
``<directory>/<step>/data`` (the grain iterator state, ``ocp.args.JsonSave``), written together
by one ``ocp.CheckpointManager.save`` (``ocp.args.Composite``).

Atomicity: Orbax writes a step into a temporary directory and renames it to ``<step>`` only once
every item is complete (committed), so a crash or an error during a save leaves the previous
checkpoints untouched and no half-written ``<step>`` directory is ever listed as a checkpoint;
stale temporary directories are removed when the next manager is opened.

Retention: the last ``max_to_keep`` checkpoints are kept and, when ``best_metric`` is given,
also the best checkpoint by that metric (``best_mode`` "max" or "min") among those saved with
metrics (Orbax preservation policies ``LatestN`` or ``BestN``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

__all__ = ["CheckpointError", "Checkpointer"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the target state.

    The message names the checkpoint directory.
    """


class Checkpointer:
    """Save and restore ``(state, data_state)`` pairs under ``directory``.

    Args:
      directory: where the step directories go (created if missing).
      max_to_keep: how many of the most recent checkpoints are kept.
      best_metric: name of a metric (e.g. ``"val/dice"``) in the ``metrics`` given to
        :meth:`save`; the best checkpoint by it is kept besides the last ``max_to_keep``.
      best_mode: ``"max"`` or ``"min"``: whether larger or smaller ``best_metric`` is better.
      async_save: write in a background thread (:meth:`wait` blocks until it is done).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int = 3,
        best_metric: str | None = None,
        best_mode: str = "max",
        async_save: bool = True,
    ):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.best_metric = best_metric
        policies: list[Any] = [ocp.checkpoint_managers.LatestN(n=max_to_keep)]
        best_fn = None
        if best_metric is not None:
            best_fn = lambda metrics: float(metrics[best_metric])
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=best_fn,
                    reverse=best_mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            best_fn=best_fn,  # makes Orbax write the metrics and answer best_step()
            best_mode=best_mode,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data")
        )

    def __repr__(self) -> str:
        return f"Checkpointer({self.directory!r}, best_metric={self.best_metric!r})"

    def all_steps(self) -> list[int]:
        """The steps of the checkpoints on disk, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The step of the newest checkpoint, or None when there is none."""
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The step of the best checkpoint by ``best_metric`` (None without metric or metrics)."""
        return self._manager.best_step() if self.best_metric is not None else None

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_state: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        """Save ``state`` and the JSON-serialisable ``data_state`` as checkpoint ``step``.

        ``metrics`` (scalars) rank the checkpoint for ``best_metric``; if ``best_metric`` is not
        among them the checkpoint only counts for the last-``max_to_keep`` rule. Asynchronous:
        call :meth:`wait` before reading the files.
        """
        if metrics is not None:
            metrics = {k: float(v) for k, v in metrics.items()}
            if self.best_metric is not None and self.best_metric not in metrics:
                metrics = None
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(dict(data_state or {})),
        )
        try:
            self._manager.save(int(step), args=args, metrics=metrics, force=True)
        except Exception as err:
            raise CheckpointError(f"saving step {step} in {self.directory} failed: {err}") from err

    def restore(self, step: int | None = None, *, target_state: Any) -> tuple[Any, dict[str, Any]]:
        """Restore ``(state, data_state)`` from checkpoint ``step`` (default: the latest).

        The state is restored into the structure, dtypes and shardings of ``target_state``
        (concrete arrays or ``jax.ShapeDtypeStruct`` with ``sharding``, e.g. from
        ``jax.eval_shape``); only its metadata is used.

        Raises:
          CheckpointError: no checkpoint in the directory, ``step`` is not one of them, or
            its files are unreadable or do not match ``target_state``.
        """
        self.wait()
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        step = steps[-1] if step is None else int(step)
        if step not in steps:
            raise CheckpointError(f"no checkpoint of step {step} in {self.directory}: has {steps}")
        abstract = jax.tree.map(_abstract, target_state)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
        )
        try:
            restored = self._manager.restore(step, args=args)
        except Exception as err:
            raise CheckpointError(
                f"cannot restore checkpoint of step {step} from {self.directory}: "
                f"{type(err).__name__}: {err}"
            ) from err
        data_state = restored["data"]
        if data_state is None:
            raise CheckpointError(
                f"checkpoint of step {step} in {self.directory} has no data state"
            )
        return restored["state"], dict(data_state)

    def restore_intact(self, *, target_state: Any) -> tuple[Any, dict[str, Any], int, list[str]]:
        """Restore the newest checkpoint that reads, for resuming a run after a crash.

        Newer checkpoints that do not restore (truncated, zeroed or missing files, e.g. a write
        interrupted by a crash or a full disk) are moved aside, renamed ``<step>.corrupt``
        (kept for inspection, and out of the way of the steps that will be saved again).

        Returns:
          ``(state, data_state, step, skipped)``, ``skipped`` one message per checkpoint moved
          aside (newest first).

        Raises:
          CheckpointError: when no checkpoint restores (the messages of all of them).
        """
        self.wait()
        skipped = []
        for step in reversed(self.all_steps()):
            try:
                state, data_state = self.restore(step, target_state=target_state)
            except CheckpointError as err:
                skipped.append(str(err))
                if jax.process_index() == 0:
                    folder = os.path.join(self.directory, str(step))
                    os.replace(folder, f"{folder}.corrupt")
                if jax.process_count() > 1:
                    multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
                self._manager.reload()
                continue
            return state, data_state, step, skipped
        raise CheckpointError(
            f"no checkpoint in {self.directory} restores: " + "; ".join(skipped or ["none saved"])
        )

    def wait(self) -> None:
        """Block until pending asynchronous saves are written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves and release the manager."""
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _abstract(x: Any) -> Any:
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    return ocp.utils.to_shape_dtype_struct(x)
