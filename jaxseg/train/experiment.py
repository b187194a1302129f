"""Run an experiment from its config: data, state, training, evaluation, prediction.

This is what ``jaxseg train``, ``jaxseg evaluate`` and ``jaxseg predict`` call. It is generic: it
takes a :class:`jaxseg.train.method.Method` and a config of the layout of
:func:`jaxseg.train.config.base_config`, reads the data through the source registry
(:func:`jaxseg.data.sources.load_split`) and calls only the method's interface.

Run directory (see also :func:`jaxseg.train.train`): ``config.json`` (the config trained with),
``split.json`` (the case ids of every part of the data, reused by ``evaluate`` and ``predict``
and when the run resumes), ``metrics.jsonl``, ``checkpoints/``, ``eval/``, ``figures/``. A run
directory belongs to one config: training again in it with a config that differs in anything
but ``train.steps`` is refused (:class:`RunDirectoryError`) before anything is written; a larger
``train.steps`` extends the finished run (schedules given as fractions of the run then follow the
new length from the resume point on).

Data parallelism: the state is replicated and every batch sharded along the ``data`` axis of a
mesh of all devices of all processes (:func:`~jaxseg.train.make_mesh`), so the same config runs
on one or several devices, and on several hosts through ``jax.distributed``, with the same
global batch; the batch size must be divisible by the number of devices. Each process reads
and augments only its slice of every batch (:func:`jaxseg.data.semi_supervised_dataset`), all
of them train, validate and save checkpoints together, and process 0 alone writes the run
directory's other files and evaluates the test sets (on its copy of the networks).

Protocol choices (documented in experiments/README.md): the evaluated output is the method's
``predict`` ``prob``; foreground is ``prob > eval.threshold`` (one channel) or the argmax;
``eval.largest_component`` is the papers' "NMS"; ``eval.checkpoint`` picks the last checkpoint
or the best by validation Dice (``val/dice``); distance metrics of an empty mask are
``eval.empty`` ("nan" and counted in ``empty``, or a number).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg.data.case import Case, MappedCases
from jaxseg.data.pipeline import loader_options, semi_supervised_dataset
from jaxseg.data.sources import Split, load_split
from jaxseg.train.checkpoint import Checkpointer, CheckpointError
from jaxseg.train.config import base_config, config_diff
from jaxseg.train.evaluate import (
    OutputFn,
    evaluate,
    json_safe,
    predict_volume,
    window_options,
)
from jaxseg.train.logging import plot_curves, write_json_atomic
from jaxseg.train.loop import train
from jaxseg.train.method import Method
from jaxseg.train.optim import learning_rate
from jaxseg.train.state import device_put_batch, local_copy, make_mesh, replicated
from jaxseg.viz import seeds_figure

__all__ = [
    "BEST_METRIC",
    "RunDirectoryError",
    "check_run_directory",
    "evaluate_run",
    "load_data",
    "load_run_config",
    "predict_case",
    "restore_state",
    "run_experiment",
    "run_seeds",
]

#: The validation metric that ranks checkpoints for ``eval.checkpoint = "best"``.
BEST_METRIC = "val/dice"


class RunDirectoryError(ValueError):
    """A run directory that holds another experiment (its ``config.json`` differs)."""


def load_data(method: Method, config: Any, *, ids: Mapping[str, Any] | None = None) -> Split:
    """The :class:`~jaxseg.data.sources.Split` of ``config.data`` (``ids``: a fixed split, e.g.
    a run's ``split.json``), every case passed through ``method.prepare_case``."""
    split = load_split(config.data, ids=ids)
    if method.prepare_case is Method.prepare_case:
        return split
    prepare = functools.partial(method.prepare_case, config)
    return Split(
        labelled=MappedCases(split.labelled, prepare),
        unlabelled=MappedCases(split.unlabelled, prepare),
        val=MappedCases(split.val, prepare),
        test_sets={name: MappedCases(cases, prepare) for name, cases in split.test_sets.items()},
    )


def _read_run_json(path: Path, what: str) -> Any:
    """The JSON content of a run-directory file, None when it does not exist."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RunDirectoryError(f"{path}: unreadable {what} ({err})") from err


def _run_split_ids(workdir: Path) -> dict[str, Any] | None:
    return _read_run_json(workdir / "split.json", "split file")


def check_run_directory(workdir: str | os.PathLike, config: Any) -> None:
    """Refuse to train ``config`` in a run directory of another config.

    A key the stored config lacks counts as the engine's default (:func:`base_config`), so runs
    of an older version, before that key existed, still resume.

    Raises:
      RunDirectoryError: if ``<workdir>/config.json`` exists and differs from ``config`` in
        anything but ``train.steps`` (the message lists the keys), or cannot be read.
    """
    path = Path(workdir) / "config.json"
    existing = _read_run_json(path, "run config")
    if existing is None:
        return
    keys = config_diff(existing, config, ignore=("train.steps",), defaults=base_config())
    if keys:
        raise RunDirectoryError(
            f"{path.parent}: the run directory holds a run of another config (differing: "
            f"{', '.join(keys)}); use another --workdir, or the run's own settings (only "
            "train.steps may change, to extend it)"
        )


def _test_cases(method: Method, config: Any, state: Any, cases: Sequence[Case]) -> Sequence[Case]:
    """``cases`` passed lazily through ``method.prepare_test_case`` with the trained ``state``
    (None: networks without a run's state, e.g. imported weights).

    Raises:
      ValueError: ``state`` is None for a method whose test cases need it.
    """
    if method.prepare_test_case is Method.prepare_test_case:
        return cases
    if state is None:
        raise ValueError(f"{config.method} predicts from the state of a trained run only")
    return MappedCases(cases, functools.partial(method.prepare_test_case, config, state))


def _empty_policy(value: Any) -> str | float:
    return "nan" if str(value).lower() == "nan" else float(value)


def _apply_fn(method: Method, config: Any, output: str = "prob") -> OutputFn:
    return OutputFn(method.predict, config, output)


def _eval_kwargs(config: Any) -> dict[str, Any]:
    e = config.eval
    return {
        **window_options(config),
        "threshold": float(e.threshold),
        "largest_component": bool(e.largest_component),
        "empty": _empty_policy(e.empty),
        "spacing": tuple(config.data.get("spacing", ())) or None,
    }


def _source_grid(config: Any) -> Any:
    """The config whose data are the test cases of ``eval.grid``: ``config`` itself, or (for
    "source" with a ``data.spacing``) a copy that leaves the cases on their own grid."""
    grid = str(config.eval.get("grid", "data"))
    if grid not in ("data", "source"):
        raise ValueError(f"eval.grid must be 'data' or 'source', got {grid!r}")
    if grid == "data" or not tuple(config.data.get("spacing", ())):
        return config
    source = copy.deepcopy(config)
    source.data.spacing = ()
    return source


PRECISIONS = {"float32": np.float32, "float64": np.float64, "bfloat16": np.float32}
"""``train.precision``: the dtype of every floating array of the state and of the batches (for
"bfloat16" only the networks compute in bfloat16: :func:`jaxseg.train.config.compute_dtype`)."""


def _precision(config: Any) -> Any:
    name = str(config.train.get("precision", "float32"))
    if name not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {sorted(PRECISIONS)}, got {name!r}")
    if name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("train.precision = float64 needs JAX_ENABLE_X64=1 in the environment")
    return PRECISIONS[name]


def _cast(tree: Any, dtype: Any) -> Any:
    """``tree`` with its floating arrays in ``dtype`` (the others unchanged)."""

    def cast(x: Any) -> Any:
        floating = jnp.issubdtype(getattr(x, "dtype", None) or np.int32, jnp.floating)
        return x.astype(dtype) if floating and x.dtype != dtype else x

    return jax.tree.map(cast, tree)


def _initial_state(method: Method, config: Any, key: jax.Array) -> Any:
    """The method's fresh state in ``train.precision``."""
    return _cast(method.create_state(config, key), _precision(config))


def _abstract_state(method: Method, config: Any, mesh) -> Any:
    """Shapes, dtypes and (replicated) shardings of the method's state, without computing it."""
    shapes = jax.eval_shape(functools.partial(_initial_state, method, config), jax.random.key(0))
    sharding = replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def _schedules(config: Any) -> dict[str, Any]:
    """``{"lr_<section>": schedule}`` of every optimizer section of the config."""
    steps = int(config.train.steps)
    return {
        f"lr_{name}": learning_rate(section, steps=steps)
        for name, section in config.get("optim", {}).items()
    }


def run_experiment(
    method: Method, config: Any, workdir: str | os.PathLike, *, progress: bool | None = None
) -> dict[str, Any]:
    """Train ``method`` as ``config`` says in ``workdir`` (resuming if it holds checkpoints),
    then evaluate it on the test sets (:func:`evaluate_run`). Returns the evaluation result, or
    an empty dict when the data have no test case (the run is complete; nothing is evaluated).

    With validation cases and ``train.eval_every > 0`` the validation Dice is logged as
    ``val/dice``, decides the best checkpoint, and each validation writes its metrics and
    prediction figures to ``<workdir>/val/<step>/``. Every optimizer's learning rate is logged
    as ``lr_<section>``.

    Raises:
      RunDirectoryError: ``workdir`` holds a run of another config (nothing is written).
      ValueError, DataError: bad settings or data (raised before anything is written).
    """
    workdir = Path(workdir)
    primary = jax.process_index() == 0
    check_run_directory(workdir, config)
    split = load_data(method, config, ids=_run_split_ids(workdir))
    # No unlabelled stream without unlabelled items per batch (labelled items only).
    unlabelled = split.unlabelled if int(config.data.unlabelled_batch) > 0 else []
    mesh = make_mesh()
    devices = mesh.shape["data"]
    batch = config.data.labelled_batch + (config.data.unlabelled_batch if unlabelled else 0)
    if batch % devices:
        raise ValueError(
            f"the batch of {batch} items cannot be split over {devices} devices; change "
            "data.labelled_batch/data.unlabelled_batch or the visible devices"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    if primary and not (workdir / "split.json").exists():
        write_json_atomic(workdir / "split.json", split.ids())
    # Created replicated on the mesh by every process alike (no transfer between processes).
    state = jax.jit(
        functools.partial(_initial_state, method, config), out_shardings=replicated(mesh)
    )(jax.random.key(int(config.seed)))
    dtype = _precision(config)
    state, hooks = method.prepare(config, state, split, workdir)
    data = method.training_data(config, state, split, workdir)
    unlabelled = data.unlabelled if unlabelled else []
    workers = int(config.data.num_workers)
    transforms = method.transforms(config, state, workdir)
    if transforms is None and not config.data.augment:
        transforms = ()
    dataset = semi_supervised_dataset(
        data.labelled,
        unlabelled,
        patch=tuple(config.data.patch),
        labelled_batch=int(config.data.labelled_batch),
        unlabelled_batch=int(config.data.unlabelled_batch),
        seed=int(config.seed),
        transforms=transforms,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        options=loader_options() if workers < 0 else loader_options(num_workers=workers),
    )
    eval_fn, eval_every, best_metric = None, None, None
    if split.val and config.train.eval_every > 0:
        apply_fn, kwargs = _apply_fn(method, config), _eval_kwargs(config)

        def eval_fn(state):
            # Every process validates (the best checkpoint is chosen collectively) on its copy
            # of the networks; process 0 writes metrics and figures to <workdir>/val/<step>/.
            out_dir = workdir / "val" / f"{int(jax.device_get(state.step)):06d}"
            local = local_copy(state)
            result = evaluate(
                apply_fn,
                local.nets,
                _test_cases(method, config, local, split.val),
                **kwargs,
                out_dir=out_dir if primary else None,
                num_figures=int(config.eval.num_figures),
                progress=False,
            )
            return {BEST_METRIC: result["mean"]["dice"]}

        eval_every, best_metric = int(config.train.eval_every), BEST_METRIC
    checkpointer = Checkpointer(
        workdir / "checkpoints",
        max_to_keep=int(config.train.max_to_keep),
        best_metric=best_metric,
    )
    try:
        train(
            state,
            method.make_train_step(config),
            iter(dataset),
            num_steps=int(config.train.steps),
            workdir=workdir,
            checkpoint_every=int(config.train.checkpoint_every),
            log_every=int(config.train.log_every),
            hooks=hooks,
            eval_fn=eval_fn,
            eval_every=eval_every,
            checkpointer=checkpointer,
            config=config,
            put_batch=lambda batch: device_put_batch(_cast(batch, dtype), mesh=mesh),
            progress=progress,
            tensorboard=bool(config.train.tensorboard),
            schedules=_schedules(config),
        )
    finally:
        checkpointer.close()
    if primary:
        plot_curves(workdir)
    if not any(len(cases) for cases in split.test_sets.values()):
        return {}  # no test case in the data: the run is complete, nothing to evaluate
    test_sets = split.test_sets if _source_grid(config) is config else None
    return evaluate_run(method, config, workdir, test_sets=test_sets, progress=progress)


def load_run_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The config a run was trained with (``<workdir>/config.json``).

    Raises:
      FileNotFoundError: if the run directory has no ``config.json``.
    """
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a run directory (no config.json)")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def restore_state(
    method: Method, config: Any, workdir: str | os.PathLike, which: str = "last"
) -> tuple[Any, int]:
    """``(state, step)`` of the ``which`` ("last" or "best") checkpoint of a run directory.

    "best" is the checkpoint of the best validation Dice (:data:`BEST_METRIC`); it falls back to
    the last checkpoint when the run kept no validation metric.

    Raises:
      CheckpointError: if there is no checkpoint.
      ValueError: for another ``which``.
    """
    if which not in ("last", "best"):
        raise ValueError(f"eval.checkpoint must be 'last' or 'best', got {which!r}")
    mesh = make_mesh()
    best_metric = BEST_METRIC if which == "best" else None
    directory = Path(workdir) / "checkpoints"
    with Checkpointer(directory, best_metric=best_metric) as checkpointer:
        steps = checkpointer.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint found in {checkpointer.directory}")
        step = checkpointer.best_step()
        step = steps[-1] if step is None else step
        state, _ = checkpointer.restore(step, target_state=_abstract_state(method, config, mesh))
    return state, step


def evaluate_run(
    method: Method,
    config: Any,
    workdir: str | os.PathLike,
    *,
    test_sets: Mapping[str, Sequence[Case]] | None = None,
    nets: Any = None,
    source: str | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate the ``eval.checkpoint`` checkpoint of a run on its test sets.

    ``test_sets`` default to those of the run's data (its ``split.json`` when it has one; on
    their own grid, with the network predicting at ``data.spacing``, for ``eval.grid =
    "source"``). The
    method's own ``evaluate`` is used when it has one; otherwise every test set is evaluated by
    sliding windows (:func:`jaxseg.train.evaluate.evaluate`): one set gives
    ``<out_dir>/metrics.json`` of that layout, several give ``<out_dir>/<set>/metrics.json``
    and ``<out_dir>/metrics.json`` = ``{set: result}``. Both carry ``checkpoint`` (which one and
    its step) and ``method``; figures go under the same folders. ``out_dir`` is
    ``<workdir>/eval`` unless given (e.g. to evaluate a run under another protocol without
    replacing its evaluation). ``nets`` (e.g. imported PyTorch weights, named by ``source``)
    are evaluated instead of a checkpoint when given. Returns what ``metrics.json`` holds.

    With several processes all restore the checkpoint together; process 0 alone evaluates (on
    its copy of the networks) and the others return an empty dict.
    """
    if nets is None:
        which = str(config.eval.checkpoint)
        state, step = restore_state(method, config, workdir, which)
        nets, checkpoint = state.nets, {"which": which, "step": int(step)}
    else:
        state, checkpoint = None, {"which": "weights", "source": str(source)}
    if jax.process_index() != 0:
        return {}
    state, nets = local_copy(state), local_copy(nets)
    out_dir = Path(workdir) / "eval" if out_dir is None else Path(out_dir)
    metadata = {"checkpoint": checkpoint, "method": str(config.method)}
    if test_sets is None:
        data_config = _source_grid(config)
        test_sets = load_data(method, data_config, ids=_run_split_ids(Path(workdir))).test_sets
    if method.evaluate is not None:
        if state is None:
            raise ValueError(f"{config.method} runs are evaluated from their checkpoints only")
        return method.evaluate(
            config, state, test_sets, out_dir=out_dir, progress=progress, metadata=metadata
        )
    results = {}
    for name, cases in test_sets.items():
        results[name] = evaluate(
            _apply_fn(method, config),
            nets,
            _test_cases(method, config, state, cases),
            **_eval_kwargs(config),
            out_dir=out_dir if len(test_sets) == 1 else out_dir / name,
            num_figures=int(config.eval.num_figures),
            progress=progress,
            metadata=metadata,
        )
    if len(results) == 1:
        return next(iter(results.values()))
    combined = {**results, **metadata}
    write_json_atomic(out_dir / "metrics.json", json_safe(combined))
    return combined


def predict_case(
    method: Method,
    config: Any,
    nets: Any,
    image: np.ndarray,
    *,
    state: Any = None,
    tta: bool = False,
) -> dict[str, np.ndarray]:
    """Whole-volume outputs of one image ``(*S, C)`` (already normalised as the training data):
    ``{"prob": (*S, K), ...}`` plus every other output of ``method.predict`` (e.g. ``"sdm"``).

    ``state`` (the trained run's, whose ``nets`` are ``nets``) completes the image first when
    the method prepares its test cases (``method.prepare_test_case``), once. With ``tta`` the
    outputs are averaged over the ``2^N`` mirrorings of the spatial axes of that completed image
    (its extra channels, e.g. a positioned prior, mirrored with it)."""
    (image,) = (case.image for case in _test_cases(method, config, state, [Case("input", image)]))
    window = window_options(config)
    shapes = jax.eval_shape(
        functools.partial(method.predict, config),
        nets,
        jax.ShapeDtypeStruct((1, *tuple(config.eval.patch), image.shape[-1]), np.float32),
    )
    axes = range(image.ndim - 1)
    flips = [tuple(a for a in axes if (k >> a) & 1) for k in range(2 ** len(axes) if tta else 1)]
    total: dict[str, np.ndarray] = {}
    for flip in flips:
        flipped = np.flip(image, flip).copy()
        for name in shapes:
            out = np.flip(
                predict_volume(_apply_fn(method, config, name), nets, flipped, **window), flip
            )
            total[name] = out if name not in total else total[name] + out
    return {name: value / len(flips) for name, value in total.items()}


def run_seeds(
    method: Method,
    config: Any,
    workdir: str | os.PathLike,
    seeds: Sequence[int],
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train and evaluate ``config`` once per seed, in ``<workdir>/seed_<s>``, and summarise.

    Each seed's run is an ordinary run directory (resumable; a finished one is only
    re-evaluated). Writes ``<workdir>/seeds.json``: the test mean of every metric per seed, and
    across seeds their ``mean`` and ``std`` (population), and ``figures/seeds.png`` (test Dice
    per case, one column per seed). Returns the summary.

    Raises:
      ValueError: for no or repeated seeds, or a method whose evaluation has several outputs.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {list(seeds)}")
    if method.evaluate is not None:
        raise ValueError(
            f"the seed summary covers one test output; {config.method} reports several "
            "(train one run per seed with --set seed=S instead)"
        )
    workdir = Path(workdir)
    per_seed, dice = {}, {}
    for seed in seeds:
        run_config = ml_collections.ConfigDict(config.to_dict())
        run_config.seed = int(seed)
        result = run_experiment(method, run_config, workdir / f"seed_{seed}", progress=progress)
        if jax.process_index() != 0:
            continue  # process 0 evaluates and summarises
        if "mean" not in result:
            raise ValueError("the seed summary needs a single test set")
        per_seed[str(seed)] = result["mean"]
        dice[str(seed)] = [case["dice"] for case in result["cases"]]
    if jax.process_index() != 0:
        return {}
    names = sorted({k for m in per_seed.values() for k in m})
    table = {k: np.array([m.get(k, np.nan) for m in per_seed.values()], float) for k in names}
    summary = {
        "method": str(config.method),
        "seeds": [int(s) for s in seeds],
        "per_seed": per_seed,
        "mean": {k: np.nanmean(v) if np.isfinite(v).any() else np.nan for k, v in table.items()},
        "std": {k: np.nanstd(v) if np.isfinite(v).any() else np.nan for k, v in table.items()},
    }
    summary = json_safe(summary)
    write_json_atomic(workdir / "seeds.json", summary)
    seeds_figure(dice, workdir / "figures" / "seeds.png", str(config.method))
    return summary
