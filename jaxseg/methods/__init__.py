"""The methods, one module each, plugged into the generic engine of :mod:`jaxseg.train`.

Every method module provides

* ``create_state(config, key) -> TrainState``: its networks (``state.nets``) and optimizers;
* ``make_train_step(config) -> step_fn``: the pure ``(state, batch, key) -> (state, metrics)``;
* ``predict(config, nets, images) -> {"prob": (B, *S, K), ...}``: per-voxel probabilities of
  patches ``(B, *S, C)`` (the network output the method's papers evaluate), jittable.

and, where the LA-style defaults of :mod:`jaxseg.train.experiment` do not fit, optionally

* ``load_cases(config)``: its data (the layout of :func:`jaxseg.train.experiment.load_cases`,
  plus ``"test_sets"``, named test sets);
* ``prepare(config, state, cases, workdir) -> (state, hooks)``: the fresh state completed from
  the data (Atlas-ISTN's initial atlas) and :class:`jaxseg.train.Hook` objects for the loop
  (its epoch-end atlas update);
* ``evaluate(config, state, test_sets, *, out_dir, progress, metadata)``: its own test protocol
  writing ``<out_dir>/metrics.json``.

Methods do not import each other; the V-Net methods share the private helpers of
``jaxseg.methods._vnet``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["METHODS", "get_method"]

METHODS = ("supervised", "sassnet", "dtml", "atlas_istn")


def get_method(name: str) -> ModuleType:
    """The method module called ``name`` (one of :data:`METHODS`)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {list(METHODS)}")
    return importlib.import_module(f"jaxseg.methods.{name}")
