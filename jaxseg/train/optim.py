"""Optimizers from config sections, with PyTorch's update rules where the papers' code uses them.

A section (``ml_collections.ConfigDict`` or mapping) names the optimizer and its settings::

    {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
     "decay_every": 2500 / 6000, "decay_every_unit": "run", "decay_rate": 0.1}
    {"name": "adam", "lr": 1e-4, "b1": 0.9, "b2": 0.99}

The learning rate is ``lr * decay_rate ** (count // decay_every)`` (constant when
``decay_every`` is 0), the reference code's ``lr = base_lr * 0.1 ** (iter_num // 2500)`` applied
after every 2500th iteration: iterations 1-2500 use ``lr``, 2501-5000 ``0.1 lr`` and so on.

With ``end_lr`` instead, the learning rate decays in inverse time,
``lr / (1 + k count)``, with ``k = (lr / end_lr - 1) / (steps - 1)`` so that the last of the
run's ``steps`` updates uses ``end_lr`` (Keras' ``InverseTimeDecay``, which the paper names).

Schedule lengths carry their unit (:func:`schedule_steps`): ``decay_every_unit`` is
``"iterations"`` (the default: the value is a number of iterations whatever the run's length) or
``"run"`` (the value is a fraction of the run: the papers' 2500 of 6000 iterations are
``2500 / 6000``). They become iterations only when the optimizer is built, from the run's final
``train.steps``, so overriding the length of a run rescales its schedules.
``weight_decay`` is PyTorch's L2 penalty (``SGD``/``Adam(weight_decay=...)``): ``wd * param`` is
added to the gradient before momentum or the Adam moments, on every parameter (batch-norm scales
and biases included, as in the reference).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optax

__all__ = ["UNITS", "learning_rate", "make_optimizer", "schedule_steps"]

#: Units of schedule lengths: a number of iterations, or a fraction of the run.
UNITS = ("iterations", "run")

_DECAY = {"decay_every", "decay_every_unit", "decay_rate", "end_lr"}
_KEYS = {
    "sgd": {"name", "lr", "momentum", "nesterov", "weight_decay", *_DECAY},
    "adam": {"name", "lr", "b1", "b2", "eps", "weight_decay", *_DECAY},
}


def schedule_steps(value: float, unit: str, *, steps: int) -> int:
    """A schedule length in iterations of a run of ``steps`` iterations.

    ``unit`` "iterations": ``value`` itself (an integer); "run": ``round(value * steps)``, at
    least 1 for a positive ``value`` (0 stays 0: no schedule).

    Raises:
      ValueError: for an unknown unit, a negative value, or a fractional number of iterations.
    """
    if unit not in UNITS:
        raise ValueError(f"schedule unit must be one of {list(UNITS)}, got {unit!r}")
    value = float(value)
    if value < 0:
        raise ValueError(f"schedule length must be >= 0, got {value:g}")
    if unit == "iterations":
        if value != int(value):
            raise ValueError(f"a length in iterations must be an integer, got {value:g}")
        return int(value)
    return 0 if value == 0 else max(1, round(value * int(steps)))


def _check(section: Mapping[str, Any]) -> dict[str, Any]:
    section = dict(section.items())
    name = section.get("name")
    if name not in _KEYS:
        raise ValueError(f"optimizer name must be one of {sorted(_KEYS)}, got {name!r}")
    unknown = set(section) - _KEYS[name]
    if unknown:
        raise ValueError(f"unknown {name} optimizer setting(s) {sorted(unknown)}")
    if float(section.get("lr", 0.0)) <= 0:
        raise ValueError(f"optimizer lr must be positive, got {section.get('lr')}")
    return section


def learning_rate(section: Mapping[str, Any], *, steps: int) -> optax.Schedule:
    """The learning-rate schedule of ``section`` in a run of ``steps`` iterations: a function of
    the optimizer's update count (0 for the first update), as the optimizer uses it.

    Raises:
      ValueError: as :func:`make_optimizer`.
    """
    section = _check(section)
    lr = float(section["lr"])
    if "end_lr" in section:
        if section.get("decay_every", 0):
            raise ValueError("an optimizer decays either every decay_every or to end_lr, not both")
        end = float(section["end_lr"])
        if not 0 < end <= lr:
            raise ValueError(f"end_lr must lie in (0, lr = {lr:g}], got {end:g}")
        rate = (lr / end - 1.0) / max(int(steps) - 1, 1)
        return lambda count: lr / (1.0 + rate * count)
    every = schedule_steps(
        section.get("decay_every", 0), section.get("decay_every_unit", "iterations"), steps=steps
    )
    if every == 0:
        return optax.constant_schedule(lr)
    return optax.exponential_decay(
        lr, transition_steps=every, decay_rate=float(section.get("decay_rate", 0.1)), staircase=True
    )


def make_optimizer(section: Mapping[str, Any], *, steps: int) -> optax.GradientTransformation:
    """The optax optimizer described by ``section`` (see the module docstring) for a run of
    ``steps`` iterations (which fixes the schedule lengths given as fractions of the run).

    Raises:
      ValueError: for an unknown ``name``, an unknown key, a non-positive ``lr`` or a bad
        schedule length or unit.
    """
    section = _check(section)
    name = section["name"]
    schedule = learning_rate(section, steps=steps)
    if name == "sgd":
        momentum = float(section.get("momentum", 0.0))
        core = optax.sgd(
            schedule, momentum=momentum or None, nesterov=bool(section.get("nesterov", False))
        )
    else:
        core = optax.adam(
            schedule,
            b1=float(section.get("b1", 0.9)),
            b2=float(section.get("b2", 0.999)),
            eps=float(section.get("eps", 1e-8)),
        )
    weight_decay = float(section.get("weight_decay", 0.0))
    if weight_decay:
        return optax.chain(optax.add_decayed_weights(weight_decay), core)
    return core
