"""Experiment configs: the engine's base, loading from files or shipped names, ``--set``.

An experiment config is a Python file with ``get_config(setting)`` returning an
``ml_collections.ConfigDict``. The configs shipped with jaxseg live in :mod:`jaxseg.configs`
(``jaxseg configs`` lists them) and start from :func:`base_config`, which holds every key the
engine reads, with neutral defaults:

``method``
    the name of a registered method (:func:`jaxseg.methods.get_method`).
``seed``
    seed of the parameters, the step keys and the input pipeline.
``data``
    the data source and split (:mod:`jaxseg.data.sources`: ``source``, ``root``, ``labelled``,
    ``unlabelled``, ``val``, ``test``, ``split_seed``, ``split_file``, ``labels``, ``spacing``,
    ``intensity``, ``clip``, and any section of the source's own), and the batches:
    ``patch``, ``labelled_batch``, ``unlabelled_batch`` (two-stream batches,
    :mod:`jaxseg.data.pipeline`), ``augment``, ``num_workers`` (-1: automatic).
``model``, ``loss``
    the method's network and loss settings.
``optim``
    one optimizer section per network (:mod:`jaxseg.train.optim`); each is logged as
    ``lr_<section>``.
``train``
    ``steps`` (total iterations), ``checkpoint_every``, ``log_every``, ``eval_every`` (0: no
    validation during training), ``max_to_keep``, ``tensorboard`` (also write TensorBoard
    events; needs ``tensorboardX``), ``precision``: "float32" (the papers' numerics),
    "float64" (every floating array of the state and the batches in float64; needs
    ``JAX_ENABLE_X64=1``; for checks of exact equality, e.g. across device counts) or
    "bfloat16" (mixed precision: the networks compute convolutions and activations in bfloat16,
    while parameters, optimizer states, batch-norm statistics and losses stay float32;
    :func:`compute_dtype`).
``eval``
    the test protocol: sliding window ``patch``/``stride``/``batch_size``/``blend`` ("mean" or
    "gaussian"), ``threshold``, ``largest_component``, the ``checkpoint`` evaluated ("last", or
    "best" by validation Dice), ``empty`` (value of a distance metric with an empty mask: "nan"
    or a number), ``num_figures`` and ``grid``: "data" scores the test cases as the training data
    are prepared; "source" scores them on their own grid when ``data.spacing`` resamples (the
    network predicts at ``data.spacing``, its probabilities are resampled back, and the metrics
    are those of the original labels, voxel units included).

Schedule lengths (learning-rate decay, loss ramp-ups) are stored with a ``<key>_unit`` sibling,
"iterations" or "run" (a fraction of ``train.steps``), and converted into iterations only when a
method builds its optimizers and step from the final config
(:func:`jaxseg.train.optim.schedule_steps`), so ``--set train.steps=N`` rescales them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from jaxseg.data.sources import DEFAULTS

__all__ = [
    "PRECISIONS",
    "apply_overrides",
    "base_config",
    "compute_dtype",
    "config_diff",
    "config_to_dict",
    "load_config",
    "shipped_configs",
]


def base_config() -> ml_collections.ConfigDict:
    """Every key the engine reads, with neutral defaults (see the module docstring)."""
    c = ml_collections.ConfigDict()
    c.method = ""
    c.seed = 0
    c.data = ml_collections.ConfigDict(
        {
            "source": "",
            **DEFAULTS,
            "patch": (),
            "labelled_batch": 2,
            "unlabelled_batch": 0,
            "augment": True,
            "num_workers": -1,
        }
    )
    c.model = ml_collections.ConfigDict()
    c.optim = ml_collections.ConfigDict()
    c.loss = ml_collections.ConfigDict()
    c.train = ml_collections.ConfigDict(
        {
            "steps": 1000,
            "checkpoint_every": 1000,
            "log_every": 10,
            "eval_every": 0,
            "max_to_keep": 3,
            "tensorboard": False,
            "precision": "float32",
        }
    )
    c.eval = ml_collections.ConfigDict(
        {
            "patch": (),
            "stride": (),
            "batch_size": 1,
            "blend": "mean",
            "threshold": 0.5,
            "largest_component": False,
            "checkpoint": "last",
            "empty": "nan",
            "num_figures": 4,
            "grid": "data",
        }
    )
    return c


#: The values of ``train.precision``.
PRECISIONS = ("float32", "float64", "bfloat16")


def compute_dtype(config: Any) -> Any:
    """The dtype a method's networks compute in for ``train.precision``: None (the dtype of
    their parameters and inputs: float32, or float64 for a float64 state) for "float32" and
    "float64", ``jnp.bfloat16`` for "bfloat16". Parameters stay float32 in every case (Flax's
    ``param_dtype``); a method's losses promote the networks' outputs to at least float32.

    Raises:
      ValueError: for another precision.
    """
    name = str(config.train.get("precision", "float32"))
    if name not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {list(PRECISIONS)}, got {name!r}")
    if name != "bfloat16":
        return None
    import jax.numpy as jnp

    return jnp.bfloat16


def shipped_configs() -> dict[str, str]:
    """``{name: first line of its docstring}`` of the configs shipped in :mod:`jaxseg.configs`."""
    package = importlib.import_module("jaxseg.configs")
    out = {}
    for name in package.NAMES:
        module = importlib.import_module(f"jaxseg.configs.{name}")
        out[name] = (module.__doc__ or "").strip().splitlines()[0]
    return out


def _config_module(spec: str):
    """The module of a config file path or of a shipped name."""
    path = Path(spec)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        module_spec = importlib.util.spec_from_file_location(f"_jaxseg_config_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    names = shipped_configs()
    if spec not in names:
        raise FileNotFoundError(
            f"{spec}: neither a config file nor a shipped config (shipped: {sorted(names)})"
        )
    return importlib.import_module(f"jaxseg.configs.{spec}")


def load_config(
    spec: str | os.PathLike, overrides: Sequence[str] = ()
) -> ml_collections.ConfigDict:
    """The config of ``spec`` = ``FILE.py[:setting]`` or ``NAME[:setting]`` (a config shipped
    in :mod:`jaxseg.configs`, e.g. ``NAME:paper``) with ``overrides`` applied.

    The module must define ``get_config(setting)``; without ``:setting`` it is called with no
    argument (its default setting). ``overrides`` are ``key=value`` strings, see
    :func:`apply_overrides`.

    Raises:
      FileNotFoundError: if there is no such file or shipped config.
      ValueError: if the file has no ``get_config``, the setting is unknown, or an override is
        malformed or names an unknown key.
    """
    spec = os.fspath(spec)
    path, setting = spec, None
    if ":" in spec and not Path(spec).exists():
        path, setting = spec.rsplit(":", 1)
    module = _config_module(path)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path}: a config file must define get_config(setting)")
    config = module.get_config() if setting is None else module.get_config(setting)
    return apply_overrides(config, overrides)


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Sequence[str]
) -> ml_collections.ConfigDict:
    """``config`` with every ``dotted.key=value`` of ``overrides`` set (in place, and returned).

    Values are Python literals (``3``, ``0.1``, ``(64, 64, 48)``, ``True``, ``"text"``) or,
    if they do not parse as one, plain strings (``data.root=/data/LA``). A list is stored as a
    tuple where the config holds a tuple; an int where it holds a float becomes a float.

    Raises:
      ValueError: for an override without ``=`` or whose key is not in the config.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must be key=value")
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
                raise ValueError(f"override {item!r}: no config section {name!r}")
            node = node[name]
        if leaf not in node:
            raise ValueError(f"override {item!r}: unknown key {key!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        current = node[leaf]
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(current, str) and not isinstance(value, str):
            value = text
        try:
            node[leaf] = value
        except TypeError as err:
            raise ValueError(f"override {item!r}: {err}") from None
    return config


def config_to_dict(config: Any) -> Any:
    """``config`` (a ConfigDict or mapping) as plain JSON data: dicts, lists, numbers, strings
    (anything else as its ``repr``), what ``config.json`` holds."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if isinstance(config, Mapping):
        return {str(k): config_to_dict(v) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return [config_to_dict(v) for v in config]
    if config is None or isinstance(config, bool | int | float | str):
        return config
    return repr(config)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def config_diff(a: Any, b: Any, *, ignore: Sequence[str] = (), defaults: Any = None) -> list[str]:
    """The dotted keys whose values differ between two configs (or ``config.json`` contents),
    keys present in only one included, ``ignore`` left out; sorted.

    ``defaults`` (e.g. :func:`base_config`): a key that ``a`` lacks counts as having its value
    there, so that a config written before a key with a neutral default existed still equals
    the same config with that default (a run directory of an older version stays resumable).
    """
    flat_a, flat_b = (_flatten(json.loads(json.dumps(config_to_dict(c)))) for c in (a, b))
    if defaults is not None:
        flat_d = _flatten(json.loads(json.dumps(config_to_dict(defaults))))
        flat_a = {**{k: v for k, v in flat_d.items() if k in flat_b}, **flat_a}
    keys = set(flat_a) | set(flat_b)
    return sorted(k for k in keys if k not in ignore and flat_a.get(k, ...) != flat_b.get(k, ...))
