"""The methods, one module each, plugged into the generic engine of :mod:`jaxseg.train`.

Every method module provides

* ``create_state(config, key) -> TrainState``: its networks (``state.nets``) and optimizers;
* ``make_train_step(config) -> step_fn``: the pure ``(state, batch, key) -> (state, metrics)``;
* ``predict(config, nets, images) -> {"prob": (B, *S, K), ...}``: per-voxel probabilities of
  patches ``(B, *S, C)`` (the network output the method's papers evaluate), jittable.

Methods do not import each other; the V-Net methods share the private helpers of
``jaxseg.methods._vnet``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["METHODS", "get_method"]

METHODS = ("supervised", "sassnet", "dtml")


def get_method(name: str) -> ModuleType:
    """The method module called ``name`` (one of :data:`METHODS`)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {list(METHODS)}")
    return importlib.import_module(f"jaxseg.methods.{name}")
