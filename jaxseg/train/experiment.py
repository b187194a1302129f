"""Run an experiment from its config: data, state, training, evaluation, prediction.

This is what ``jaxseg train``, ``jaxseg evaluate`` and ``jaxseg predict`` call. It is generic:
the method is passed in as a module (see :mod:`jaxseg.methods`) providing ``create_state``,
``make_train_step`` and ``predict``; the config layout is that of
:func:`jaxseg.train.config.base_config`.

Data parallelism: the state is replicated and every batch sharded along the ``data`` axis of a
mesh of all visible devices (:func:`~jaxseg.train.make_mesh`), so the same config runs on one or
several devices with the same global batch; the batch size must be divisible by the number of
devices.

Protocol choices (documented in experiments/README.md): the evaluated output is the method's
``predict`` ``prob`` (the segmentation head for SASSNet and DTML, as their test scripts);
foreground is ``prob > eval.threshold``; ``eval.largest_component`` is the papers' "NMS";
``eval.checkpoint`` picks the last checkpoint (the reference evaluates the final iteration) or the
best by validation Dice; distance metrics of an empty mask are ``eval.empty`` ("nan" and counted
in ``empty``, or a number).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxseg.data import synthetic
from jaxseg.data.case import Case
from jaxseg.data.la_h5 import la_partition, la_split, load_la_case
from jaxseg.data.pipeline import loader_options, semi_supervised_dataset
from jaxseg.train.checkpoint import Checkpointer, CheckpointError
from jaxseg.train.evaluate import evaluate, predict_volume
from jaxseg.train.logging import plot_curves, write_json_atomic
from jaxseg.train.loop import train
from jaxseg.train.state import device_put_batch, make_mesh, replicate

__all__ = [
    "evaluate_run",
    "load_cases",
    "load_run_config",
    "predict_case",
    "restore_state",
    "run_experiment",
    "run_seeds",
]

# Seeds of the synthetic validation and test cases: disjoint from the training seeds.
_SYNTHETIC_SEEDS = {"train": 0, "val": 10_000, "test": 20_000}


class _LazyCases(Sequence):
    """LA cases read from disk when indexed (the pipeline holds no volume it is not using)."""

    def __init__(self, root: str, ids: Sequence[str], with_label: bool = True):
        self.root, self.ids, self.with_label = root, list(ids), with_label

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return _LazyCases(self.root, self.ids[index], self.with_label)
        return load_la_case(self.root, self.ids[index], with_label=self.with_label)


def load_cases(config: Any) -> dict[str, Sequence[Case]]:
    """``{"labelled", "unlabelled", "val", "test"}`` case sequences of ``config.data``.

    Raises:
      ValueError: for an unknown ``data.source``, a missing ``data.root`` or counts out of range.
    """
    data = config.data
    if data.source == "synthetic":
        s = data.synthetic
        kwargs = {"shape": tuple(s.shape), "spacing": tuple(s.spacing)}
        if not 0 < data.labelled <= s.train:
            raise ValueError(f"data.labelled must be in [1, {s.train}], got {data.labelled}")
        train_cases = synthetic.dataset(
            "la_like", s.train, seed=_SYNTHETIC_SEEDS["train"], **kwargs
        )
        rest = train_cases[data.labelled :]
        unlabelled = rest if data.unlabelled < 0 else rest[: data.unlabelled]
        return {
            "labelled": train_cases[: data.labelled],
            "unlabelled": unlabelled,
            "val": synthetic.dataset("la_like", s.val, seed=_SYNTHETIC_SEEDS["val"], **kwargs),
            "test": synthetic.dataset("la_like", s.test, seed=_SYNTHETIC_SEEDS["test"], **kwargs),
        }
    if data.source != "la_h5":
        raise ValueError(f"data.source must be 'la_h5' or 'synthetic', got {data.source!r}")
    if not data.root:
        raise ValueError("data.root must name the LA data folder (set it with --set data.root=DIR)")
    if not Path(data.root).is_dir():
        raise ValueError(f"{data.root}: LA data folder not found")
    labelled, rest = la_partition(int(data.labelled))
    val = rest[len(rest) - data.val :] if data.val > 0 else []
    rest = rest[: len(rest) - len(val)]
    unlabelled = rest if data.unlabelled < 0 else rest[: data.unlabelled]
    return {
        "labelled": _LazyCases(data.root, labelled),
        "unlabelled": _LazyCases(data.root, unlabelled),
        "val": _LazyCases(data.root, val),
        "test": _LazyCases(data.root, la_split("test")),
    }


def _empty_policy(value: Any) -> str | float:
    return "nan" if str(value).lower() == "nan" else float(value)


def _apply_fn(method: ModuleType, config: Any, output: str = "prob"):
    def apply_fn(nets, images):
        return method.predict(config, nets, images)[output]

    return apply_fn


def _eval_kwargs(config: Any) -> dict[str, Any]:
    e = config.eval
    return {
        "patch": tuple(e.patch),
        "stride": tuple(e.stride),
        "batch_size": int(e.batch_size),
        "threshold": float(e.threshold),
        "largest_component": bool(e.largest_component),
        "empty": _empty_policy(e.empty),
    }


def _abstract_state(method: ModuleType, config: Any, mesh) -> Any:
    """Shapes, dtypes and (replicated) shardings of the method's state, without computing it."""
    shapes = jax.eval_shape(functools.partial(method.create_state, config), jax.random.key(0))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes
    )


def run_experiment(
    method: ModuleType, config: Any, workdir: str | os.PathLike, *, progress: bool | None = None
) -> dict[str, Any]:
    """Train ``method`` as ``config`` says in ``workdir`` (resuming if it holds checkpoints),
    then evaluate it on the test cases (:func:`evaluate_run`). Returns the evaluation result.

    With validation cases and ``train.eval_every > 0`` the validation Dice is logged as
    ``val/dice``, decides the best checkpoint, and each validation writes its metrics and
    prediction figures to ``<workdir>/val/<step>/``."""
    workdir = Path(workdir)
    cases = getattr(method, "load_cases", load_cases)(config)
    mesh = make_mesh()
    devices = mesh.shape["data"]
    batch = config.data.labelled_batch + (
        config.data.unlabelled_batch if cases["unlabelled"] else 0
    )
    if batch % devices:
        raise ValueError(
            f"the batch of {batch} items cannot be split over {devices} devices; change "
            "data.labelled_batch/data.unlabelled_batch or the visible devices"
        )
    state = jax.jit(functools.partial(method.create_state, config))(
        jax.random.key(int(config.seed))
    )
    state = replicate(state, mesh)
    hooks = []
    if hasattr(method, "prepare"):
        state, hooks = method.prepare(config, state, cases, workdir)
    workers = int(config.data.num_workers)
    options = loader_options() if workers < 0 else loader_options(num_workers=workers)
    dataset = semi_supervised_dataset(
        cases["labelled"],
        cases["unlabelled"],
        patch=tuple(config.data.patch),
        labelled_batch=int(config.data.labelled_batch),
        unlabelled_batch=int(config.data.unlabelled_batch),
        seed=int(config.seed),
        transforms=None if config.data.get("augment", True) else (),
        options=options,
    )
    eval_fn, eval_every, best_metric = None, None, None
    if cases["val"] and config.train.eval_every > 0:
        apply_fn = _apply_fn(method, config)
        kwargs = _eval_kwargs(config)

        def eval_fn(state):
            # Metrics and figures of every validation go to <workdir>/val/<step>/.
            out_dir = workdir / "val" / f"{int(jax.device_get(state.step)):06d}"
            result = evaluate(
                apply_fn,
                state.nets,
                cases["val"],
                **kwargs,
                out_dir=out_dir,
                num_figures=int(config.eval.num_figures),
                progress=False,
            )
            return {"val/dice": result["mean"]["dice"]}

        eval_every, best_metric = int(config.train.eval_every), "val/dice"
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
            put_batch=functools.partial(device_put_batch, mesh=mesh),
            progress=progress,
            tensorboard=bool(config.train.get("tensorboard", False)),
        )
    finally:
        checkpointer.close()
    plot_curves(workdir)
    test = cases.get("test_sets", cases["test"])
    return evaluate_run(method, config, workdir, cases=test, progress=progress)


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
    method: ModuleType, config: Any, workdir: str | os.PathLike, which: str = "last"
) -> tuple[Any, int]:
    """``(state, step)`` of the ``which`` ("last" or "best") checkpoint of a run directory.

    "best" falls back to the last checkpoint when the run kept no validation metric.

    Raises:
      CheckpointError: if there is no checkpoint.
      ValueError: for another ``which``.
    """
    if which not in ("last", "best"):
        raise ValueError(f"eval.checkpoint must be 'last' or 'best', got {which!r}")
    mesh = make_mesh()
    with Checkpointer(Path(workdir) / "checkpoints") as checkpointer:
        steps = checkpointer.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint found in {checkpointer.directory}")
        step = checkpointer.best_step() if which == "best" else None
        step = steps[-1] if step is None else step
        state, _ = checkpointer.restore(step, target_state=_abstract_state(method, config, mesh))
    return state, step


def evaluate_run(
    method: ModuleType,
    config: Any,
    workdir: str | os.PathLike,
    *,
    cases: Sequence[Case] | None = None,
    nets: Any = None,
    source: str | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate the ``eval.checkpoint`` checkpoint of a run on its test cases.

    Writes ``<out_dir>/metrics.json`` (the layout of :func:`jaxseg.train.evaluate.evaluate` plus
    ``checkpoint``: which one and its step, and ``method``) and figures under
    ``<out_dir>/figures/``, ``out_dir`` being ``<workdir>/eval`` unless given (e.g. to evaluate
    a run under another protocol without replacing its evaluation); returns the same dict.
    ``nets`` (e.g. imported PyTorch weights, named by ``source``) are evaluated instead of a
    checkpoint when given.
    """
    if nets is None:
        which = str(config.eval.checkpoint)
        state, step = restore_state(method, config, workdir, which)
        nets, checkpoint = state.nets, {"which": which, "step": int(step)}
    else:
        state, checkpoint = None, {"which": "weights", "source": str(source)}
    out_dir = Path(workdir) / "eval" if out_dir is None else Path(out_dir)
    metadata = {"checkpoint": checkpoint, "method": str(config.method)}
    if hasattr(method, "evaluate"):
        # Methods with their own test protocol (several outputs and test sets: Atlas-ISTN).
        if state is None:
            raise ValueError(f"{config.method} runs are evaluated from their checkpoints only")
        if cases is None:
            cases = getattr(method, "load_cases", load_cases)(config)["test_sets"]
        return method.evaluate(
            config, state, cases, out_dir=out_dir, progress=progress, metadata=metadata
        )
    cases = load_cases(config)["test"] if cases is None else cases
    result = evaluate(
        _apply_fn(method, config),
        nets,
        cases,
        **_eval_kwargs(config),
        out_dir=out_dir,
        num_figures=int(config.eval.num_figures),
        progress=progress,
        metadata=metadata,
    )
    return result


def predict_case(
    method: ModuleType, config: Any, nets: Any, image: np.ndarray
) -> dict[str, np.ndarray]:
    """Whole-volume outputs of one image ``(*S, C)`` (already normalised as the training data):
    ``{"prob": (*S, K), "sdm": (*S, K)}`` (``sdm`` when the method predicts one)."""
    e = config.eval
    window = {"patch": tuple(e.patch), "stride": tuple(e.stride), "batch_size": int(e.batch_size)}
    out = {"prob": predict_volume(_apply_fn(method, config), nets, image, **window)}
    shapes = jax.eval_shape(
        functools.partial(method.predict, config),
        nets,
        jax.ShapeDtypeStruct((1, *tuple(e.patch), image.shape[-1]), np.float32),
    )
    if "sdm" in shapes:
        out["sdm"] = predict_volume(_apply_fn(method, config, "sdm"), nets, image, **window)
    return out


def run_seeds(
    method: ModuleType,
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
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {list(seeds)}")
    if hasattr(method, "evaluate"):
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
        per_seed[str(seed)] = result["mean"]
        dice[str(seed)] = [case["dice"] for case in result["cases"]]
    names = sorted({k for m in per_seed.values() for k in m})
    table = {k: np.array([m.get(k, np.nan) for m in per_seed.values()], float) for k in names}
    summary = {
        "method": str(config.method),
        "seeds": [int(s) for s in seeds],
        "per_seed": per_seed,
        "mean": {k: _finite(np.nanmean(v)) for k, v in table.items()},
        "std": {k: _finite(np.nanstd(v)) for k, v in table.items()},
    }
    write_json_atomic(workdir / "seeds.json", summary)
    _plot_seeds(dice, workdir / "figures" / "seeds.png", str(config.method))
    return summary


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _plot_seeds(dice: dict[str, list[float]], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 + 1.0 * len(dice), 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, values in enumerate(dice.values()):
        values = np.asarray(values, float)
        ax.scatter(np.full(values.shape, i), values, s=12, alpha=0.7)
        ax.hlines(np.nanmean(values), i - 0.3, i + 0.3, color="k")
    ax.set_xticks(range(len(dice)), [f"seed {s}" for s in dice])
    ax.set_ylabel("test Dice")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
