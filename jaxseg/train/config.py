"""Experiment configs: the shared base, its settings, loading from files and ``--set`` overrides.

An experiment config is a Python file with ``get_config(setting)`` returning an
``ml_collections.ConfigDict``; the files under ``experiments/<method>/configs/`` start from
:func:`base_config` and override what their method needs. The sections of the base:

``method``
    the method module of :mod:`jaxseg.methods` ("supervised", "sassnet", "dtml").
``seed``
    seed of the parameters, the step keys and the input pipeline.
``data``
    ``source`` "la_h5" (the UA-MT ``mri_norm2.h5`` files under ``root``, split by the shipped
    LA lists: the first ``labelled`` train ids are labelled, the next ``unlabelled`` (-1: all the
    rest) unlabelled, and the 20 test ids are the test set) or "synthetic" (LA-like phantoms of
    :func:`jaxseg.data.synthetic.la_like` generated in memory: ``synthetic.train`` training cases
    of which the first ``labelled`` are labelled, ``synthetic.val`` validation and
    ``synthetic.test`` test cases, from disjoint seed ranges). ``val`` (la_h5 only) holds out the
    last ``val`` unlabelled train ids for validation. ``patch``, ``labelled_batch`` and
    ``unlabelled_batch`` shape the two-stream batches; ``num_workers`` (-1: automatic) the loader.
``model``
    V-Net settings (``n_filters``, ``normalization``, ``has_dropout``).
``optim``
    one optimizer section per network (see :mod:`jaxseg.train.optim`).
``train``
    ``steps`` (total iterations), ``checkpoint_every``, ``log_every``, ``eval_every`` (0: no
    validation during training), ``max_to_keep``, ``tensorboard`` (also write TensorBoard
    events; needs ``tensorboardX``).
``eval``
    the test protocol: sliding window ``patch``/``stride``/``batch_size``, ``threshold``,
    ``largest_component``, the ``checkpoint`` evaluated ("last" as the reference code, or "best"
    by validation Dice), ``empty`` (value of a distance metric with an empty mask: "nan" or a
    number) and ``num_figures``.

Settings: ``paper`` (LA, 16 labelled of 80, 6000 iterations, batch 2 + 2, patch 112x112x80,
stride 18x18x4), ``paper8`` (the same with 8 labelled), ``synthetic`` (LA-like phantoms at
64x64x48, 4 labelled and 12 unlabelled training cases, 500 iterations; meaningful on a CPU in a
few minutes) and ``smoke`` (tiny volumes and network, a handful of steps: about a minute on two
CPU cores, for tests and a first look).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import ml_collections

__all__ = ["PAPER_STEPS", "SETTINGS", "apply_overrides", "base_config", "load_config", "scaled"]

SETTINGS = ("paper", "paper8", "synthetic", "smoke")

#: Iterations of the LA papers' runs; schedules given in iterations are scaled to other lengths.
PAPER_STEPS = 6000


def scaled(config: ml_collections.ConfigDict, iterations: int) -> int:
    """``iterations`` of a 6000-iteration paper schedule scaled to ``config.train.steps``
    (at least 1): e.g. the x0.1 learning-rate step every 2500 iterations, or the 150-iteration
    unit of the consistency ramp-up, for shorter runs."""
    return max(1, round(iterations * config.train.steps / PAPER_STEPS))


def base_config(setting: str = "paper") -> ml_collections.ConfigDict:
    """The shared base config in ``setting`` (one of :data:`SETTINGS`); see the module docstring."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; expected one of {list(SETTINGS)}")
    c = ml_collections.ConfigDict()
    c.method = ""
    c.seed = 1337  # the reference scripts' seed
    c.data = ml_collections.ConfigDict(
        {
            "source": "la_h5",
            "root": "",
            "labelled": 16,
            "unlabelled": -1,
            "val": 0,
            "patch": (112, 112, 80),
            "labelled_batch": 2,
            "unlabelled_batch": 2,
            "num_workers": -1,
            "synthetic": {
                "train": 80,
                "val": 0,
                "test": 20,
                "shape": (112, 112, 80),
                "spacing": (0.625, 0.625, 0.625),
            },
        }
    )
    c.model = ml_collections.ConfigDict(
        {"n_filters": 16, "normalization": "batchnorm", "has_dropout": True}
    )
    c.optim = ml_collections.ConfigDict()
    c.train = ml_collections.ConfigDict(
        {
            "steps": 6000,
            "checkpoint_every": 1000,
            "log_every": 10,
            "eval_every": 0,
            "max_to_keep": 3,
        }
    )
    c.eval = ml_collections.ConfigDict(
        {
            "patch": (112, 112, 80),
            "stride": (18, 18, 4),
            "batch_size": 1,
            "threshold": 0.5,
            "largest_component": False,
            "checkpoint": "last",
            "empty": "nan",
            "num_figures": 4,
        }
    )
    if setting == "paper8":
        c.data.labelled = 8
    elif setting in ("synthetic", "smoke"):
        c.data.source = "synthetic"
        c.data.labelled = 4
        c.data.synthetic.update(train=16, val=4, test=8, shape=(64, 64, 48), spacing=(1.1,) * 3)
        c.data.patch = (48, 48, 32)
        c.model.n_filters = 8
        c.train.update(steps=500, checkpoint_every=250, log_every=10, eval_every=250)
        c.eval.update(patch=(48, 48, 32), stride=(8, 8, 8), batch_size=4, checkpoint="best")
    if setting == "smoke":
        c.data.labelled = 2
        c.data.synthetic.update(train=4, val=1, test=2, shape=(32, 32, 32), spacing=(2.2,) * 3)
        c.data.patch = (32, 32, 16)
        c.model.n_filters = 4
        c.train.update(steps=6, checkpoint_every=3, log_every=1, eval_every=3)
        c.eval.update(patch=(32, 32, 16), stride=(16, 16, 8), batch_size=2, num_figures=1)
    return c


def load_config(
    spec: str | os.PathLike, overrides: Sequence[str] = ()
) -> ml_collections.ConfigDict:
    """The config of ``spec`` = ``FILE.py[:setting]`` with ``overrides`` applied.

    ``FILE.py`` must define ``get_config(setting)``; without ``:setting`` it is called with no
    argument (its default setting). ``overrides`` are ``key=value`` strings, see
    :func:`apply_overrides`.

    Raises:
      FileNotFoundError: if the file does not exist.
      ValueError: if the file has no ``get_config`` or an override is malformed or names an
        unknown key.
    """
    spec = os.fspath(spec)
    path, setting = spec, None
    if ":" in spec and not Path(spec).exists():
        path, setting = spec.rsplit(":", 1)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    module_spec = importlib.util.spec_from_file_location(f"_jaxseg_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
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
