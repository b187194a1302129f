"""The generic training loop shared by every method.

Resume contract
---------------
``train`` looks for checkpoints in its checkpointer (default ``<workdir>/checkpoints``). If there
is one, it restores the state *and* the data iterator state of the latest one that reads
(``data_iterator.set_state``; newer unreadable ones, e.g. cut short by a crash or a full disk,
are renamed ``<step>.corrupt`` with a warning: :meth:`Checkpointer.restore_intact`), drops the
``metrics.jsonl`` lines of steps after the restored step and continues to ``num_steps``.
Since the step key is ``fold_in(state.rng, state.step)`` and the iterator yields the batches
it would have yielded, a run interrupted and resumed ends with the
same state and the same ``metrics.jsonl`` as an uninterrupted one. Call it again with the same
arguments (and a freshly built ``state`` and iterator of the same structure) to resume.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
from tqdm.auto import tqdm

from jaxseg.train.checkpoint import Checkpointer
from jaxseg.train.config import config_to_dict
from jaxseg.train.logging import MetricsWriter, TensorBoardWriter, read_metrics, write_json_atomic
from jaxseg.train.state import StepFn, jit_step, numeric_batch, step_key

__all__ = ["Hook", "train"]


@dataclasses.dataclass(frozen=True)
class Hook:
    """``fn(state, step) -> state`` run after every step with ``step % every == 0``.

    ``step`` is the number of steps done (1 after the first step). Hooks run on the host, between
    jitted steps and before the checkpoint of that step, so their changes to the state are saved.
    """

    every: int
    fn: Callable[[Any, int], Any]

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"Hook.every must be >= 1, got {self.every}")


def _commit(x: Any) -> Any:
    if isinstance(x, jax.Array) and not x.committed:
        return jax.device_put(x, x.sharding)
    return x


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m20s`` or ``12s``."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def train(
    state: Any,
    step_fn: StepFn,
    data_iterator: Iterator[Mapping[str, Any]],
    *,
    num_steps: int,
    workdir: str | os.PathLike,
    checkpoint_every: int,
    log_every: int,
    hooks: Sequence[Hook] = (),
    eval_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    eval_every: int | None = None,
    checkpointer: Checkpointer | None = None,
    config: Any = None,
    put_batch: Callable[[dict[str, Any]], Any] | None = None,
    progress: bool | None = None,
    tensorboard: bool = False,
    schedules: Mapping[str, Callable[[int], Any]] | None = None,
) -> Any:
    """Train ``state`` with ``step_fn`` for ``num_steps`` steps in total, resuming if possible.

    Args:
      state: the initial state (a :class:`~jaxseg.train.TrainState` or any pytree with ``step``
        and ``rng``); on resume it is only the target structure of the restore.
      step_fn: pure ``(state, batch, key) -> (state, metrics)``, not jitted (it is jitted here
        with :func:`~jaxseg.train.jit_step`, which increments ``state.step``). ``key`` is
        ``fold_in(state.rng, state.step)``.
      data_iterator: a grain ``DatasetIterator`` (``get_state``/``set_state``) of batch dicts;
        non-numeric entries (``"id"``) are dropped before the step.
      num_steps: the total number of steps (not the number still to run).
      workdir: run directory: ``metrics.jsonl``, ``config.json``, ``checkpoints/``.
      checkpoint_every: save every this many steps; the last step is always saved.
      log_every: write the step's metrics to ``metrics.jsonl`` every this many steps (and at
        the last step).
      hooks: :class:`Hook` objects, run in order after their steps.
      eval_fn: ``eval_fn(state) -> metrics`` run every ``eval_every`` steps (and at the last
        step if ``eval_every`` is given); its metrics are logged with the step and given to the
        checkpointer (a checkpoint is saved at every evaluation).
      eval_every: period of ``eval_fn``; None runs it only at the last step.
      checkpointer: default ``Checkpointer(<workdir>/checkpoints)``; closed at the end if it
        was created here.
      config: a ConfigDict or dict written to ``<workdir>/config.json`` (atomically).
      put_batch: host batch -> device batch (e.g. ``partial(device_put_batch, mesh=mesh)``);
        default: the numeric entries as they are (jit transfers them).
      progress: show a tqdm bar (True), nothing (False), or by default a bar when stderr is a
        terminal and otherwise a plain line on stderr about every twentieth of the run (step,
        steps/s since the start or resumption, ETA, loss and validation metrics).
      tensorboard: also write the logged metrics as TensorBoard events in
        ``<workdir>/tensorboard`` (needs ``tensorboardX``).
      schedules: ``{name: fn}`` logged with every logged step as ``fn(step - 1)``, the value
        used by that step's update (e.g. ``{"lr_seg": learning-rate schedule}``: optax counts
        updates from 0).

    Every logged record also holds ``wall_time``, the seconds of training since the run
    started (a resumed run continues from the last record it keeps).

    With several processes (``jax.distributed``) every process calls ``train`` with its own
    iterator (its slice of each global batch); all of them run the steps, hooks, ``eval_fn``
    and checkpoint saves (Orbax writes collectively), and only process 0 writes
    ``config.json``, ``metrics.jsonl``, TensorBoard events and the progress bar.

    Returns:
      The state after ``num_steps`` steps.
    """
    for name, value in (("checkpoint_every", checkpoint_every), ("log_every", log_every)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    workdir = os.fspath(workdir)
    primary = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if config is not None and primary:
        write_json_atomic(os.path.join(workdir, "config.json"), config_to_dict(config))
    own_checkpointer = checkpointer is None
    if own_checkpointer:
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    writer = MetricsWriter(os.path.join(workdir, "metrics.jsonl")) if primary else None
    board = (
        TensorBoardWriter(os.path.join(workdir, "tensorboard")) if tensorboard and primary else None
    )

    if checkpointer.latest_step() is not None:
        state, data_state, _, skipped = checkpointer.restore_intact(target_state=state)
        for message in skipped if primary else ():
            print(f"warning: {message}; moved aside, resuming from an older one", file=sys.stderr)
        data_iterator.set_state(data_state)
    else:
        # Restored arrays are committed to their shardings; commit a fresh state too, so that a
        # fresh run and a resumed one share one compilation of the step.
        state = jax.tree.map(_commit, state)
    start = int(jax.device_get(state.step))
    if start and primary:
        print(f"resuming from step {start} of {num_steps} ({checkpointer.directory})")
    kept = []
    if writer is not None:
        writer.truncate_after(start)
        kept = read_metrics(writer.path)
    elapsed = float(kept[-1].get("wall_time") or 0.0) if kept else 0.0
    started = time.perf_counter() - elapsed
    schedules = dict(schedules or {})

    jitted = jit_step(step_fn)
    put = put_batch or numeric_batch
    show = primary and (sys.stderr.isatty() if progress is None else progress)
    bar = tqdm(total=num_steps, initial=start, disable=not show, desc="train", dynamic_ncols=True)
    # Without a terminal (cluster jobs, logs redirected) and unless progress=False: a plain line
    # about every twentieth of the run instead of the bar.
    plain = primary and progress is None and not show
    plain_every = log_every * max(1, num_steps // 20 // log_every)
    tick, tick_step = time.perf_counter(), start
    run_tick, run_tick_step = tick, start
    try:
        for step in range(start + 1, num_steps + 1):
            batch = put(numeric_batch(next(data_iterator)))
            state, metrics = jitted(state, batch, step_key(state))
            for hook in hooks:
                if step % hook.every == 0:
                    state = hook.fn(state, step)
            last = step == num_steps
            record: dict[str, float] = {}
            if primary and (step % log_every == 0 or last):
                record.update({k: float(v) for k, v in jax.device_get(metrics).items()})
                record.update({k: float(fn(step - 1)) for k, fn in schedules.items()})
            eval_metrics = None
            if eval_fn is not None and (
                (eval_every is not None and (step % eval_every == 0)) or last
            ):
                eval_metrics = {k: float(v) for k, v in eval_fn(state).items()}
                if primary:
                    record.update(eval_metrics)
            if record:
                record["wall_time"] = time.perf_counter() - started
                writer.write(step, record)
                if board is not None:
                    board.write(step, record)
                now = time.perf_counter()
                rate = (step - tick_step) / max(now - tick, 1e-9)
                tick, tick_step = now, step
                postfix = {"steps/s": f"{rate:.2f}"}
                if "loss" in record:
                    postfix["loss"] = f"{record['loss']:.4g}"
                bar.set_postfix(postfix, refresh=False)
            if plain and (step % plain_every == 0 or last):
                now = time.perf_counter()
                rate = (step - run_tick_step) / max(now - run_tick, 1e-9)
                line = f"train: step {step}/{num_steps}, {rate:.2f} steps/s"
                line += f", ETA {_duration((num_steps - step) / max(rate, 1e-9))}"
                for key in ("loss", *sorted(eval_metrics or ())):
                    if key in record:
                        line += f", {key} {record[key]:.4g}"
                print(line, file=sys.stderr, flush=True)
            if step % checkpoint_every == 0 or last or eval_metrics is not None:
                checkpointer.save(
                    step, state, data_state=data_iterator.get_state(), metrics=eval_metrics
                )
            bar.update(1)
        checkpointer.wait()
    finally:
        bar.close()
        if board is not None:
            board.close()
        if own_checkpointer:
            checkpointer.close()
    return state
