"""The methods and their registry: each module (or package) defines ``METHOD``, a
:class:`jaxseg.train.method.Method` record the engine calls.

``get_method(name)`` imports ``jaxseg.methods.<name>`` and returns its ``METHOD``; the CLI and the
engine name no method. The module-level functions of a method (``default_config``,
``create_state``, ``make_train_step``, ``predict``, ...) stay importable for direct use. Methods
do not import each other; the V-Net methods share the private helpers of
``jaxseg.methods._vnet``.
"""

from __future__ import annotations

import importlib

from jaxseg.train.method import Method

__all__ = ["METHODS", "Method", "get_method"]

#: The registered methods.
METHODS = ("supervised", "sassnet", "dtml", "stipple", "atlas_istn")


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name`` (one of :data:`METHODS`).

    Raises:
      ValueError: for an unknown name.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {list(METHODS)}")
    method = importlib.import_module(f"jaxseg.methods.{name}").METHOD
    if method.name != name:
        raise ValueError(f"jaxseg.methods.{name} registers a method called {method.name!r}")
    return method
