"""Optimizers from config sections, with PyTorch's update rules where the papers' code uses them.

A section (``ml_collections.ConfigDict`` or mapping) names the optimizer and its settings::

    {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
     "decay_every": 2500, "decay_rate": 0.1}
    {"name": "adam", "lr": 1e-4, "b1": 0.9, "b2": 0.99}

The learning rate is ``lr * decay_rate ** (count // decay_every)`` (constant when
``decay_every`` is 0), the reference code's ``lr = base_lr * 0.1 ** (iter_num // 2500)`` applied
after every 2500th iteration: iterations 1-2500 use ``lr``, 2501-5000 ``0.1 lr`` and so on.
``weight_decay`` is PyTorch's L2 penalty (``SGD``/``Adam(weight_decay=...)``): ``wd * param`` is
added to the gradient before momentum or the Adam moments, on every parameter (batch-norm scales
and biases included, as in the reference).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optax

__all__ = ["make_optimizer"]

_KEYS = {
    "sgd": {"name", "lr", "momentum", "nesterov", "weight_decay", "decay_every", "decay_rate"},
    "adam": {"name", "lr", "b1", "b2", "eps", "weight_decay", "decay_every", "decay_rate"},
}


def make_optimizer(section: Mapping[str, Any]) -> optax.GradientTransformation:
    """The optax optimizer described by ``section`` (see the module docstring).

    Raises:
      ValueError: for an unknown ``name``, an unknown key or a non-positive ``lr``.
    """
    section = dict(section.items())
    name = section.get("name")
    if name not in _KEYS:
        raise ValueError(f"optimizer name must be one of {sorted(_KEYS)}, got {name!r}")
    unknown = set(section) - _KEYS[name]
    if unknown:
        raise ValueError(f"unknown {name} optimizer setting(s) {sorted(unknown)}")
    lr = float(section.get("lr", 0.0))
    if lr <= 0:
        raise ValueError(f"optimizer lr must be positive, got {lr}")
    every = int(section.get("decay_every", 0))
    schedule: Any = lr
    if every > 0:
        schedule = optax.exponential_decay(
            lr,
            transition_steps=every,
            decay_rate=float(section.get("decay_rate", 0.1)),
            staircase=True,
        )
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
