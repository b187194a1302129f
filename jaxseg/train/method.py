"""The interface every method provides to the engine: :class:`Method`.

A method is a record of functions (no subclassing, no hidden state). The engine
(:mod:`jaxseg.train.experiment`) calls only these fields; it never asks a method whether it has
some attribute. The required fields are the method's config, state and step; the optional ones
have defaults that fit a segmentation network evaluated by sliding windows:

``default_config(setting) -> ConfigDict``
    the method's config in one of ``settings`` (every method has ``"paper"`` and ``"smoke"``).
``create_state(config, key) -> TrainState``
    fresh networks and optimizer states (a pytree; :class:`jaxseg.train.TrainState` or a
    subclass with more fields).
``make_train_step(config) -> step_fn``
    the pure ``(state, batch, key) -> (state, metrics)``; ``metrics`` holds scalars, among them
    ``"loss"`` and every loss weight that follows a schedule.
``predict(config, nets, images) -> {"prob": (B, *S, K), ...}``
    per-voxel outputs of patches ``(B, *S, C)``, jittable; ``"prob"`` is what is evaluated
    (``K == 1``: a foreground probability, thresholded; ``K > 1``: class scores, argmax), other
    keys (``"sdm"``) are extra maps ``jaxseg predict`` can write.
``prepare_case(config, case) -> case``
    method-specific preprocessing of every case the data source gives (e.g. resampling to the
    fixed grid of a registration network), applied lazily; default: the case unchanged.
``transforms(config, state, workdir) -> tuple`` or None
    the per-record transforms of the training batches (:mod:`jaxseg.data.transforms`; they may
    read a record's ``"position"`` in its stream, see :mod:`jaxseg.data.pipeline`), given the
    prepared state; None (default): :func:`jaxseg.data.default_transforms` of ``data.patch``
    when ``data.augment`` is true, no transform otherwise.
``prepare(config, state, split, workdir) -> (state, hooks)``
    the fresh state completed from the training data (e.g. an initial template built from the
    cases) and :class:`jaxseg.train.Hook` objects run by the loop (e.g. an epoch-end update of
    that template, or a round of pseudo-labelling); default: the state unchanged and no hook.
``training_data(config, state, split, workdir) -> split``
    the :class:`jaxseg.data.sources.Split` the batches are drawn from, given the prepared state
    (e.g. cases with extra channels the step reads: a placed prior, pseudo-labels written by a
    hook into ``workdir``); default: ``split`` unchanged.
``prepare_test_case(config, state, case) -> case``
    a validation, test or prediction case completed with what the trained state infers before
    ``predict`` runs on it by sliding windows (e.g. a prior positioned on the network's first
    prediction, as an extra channel); default: the case unchanged.
``evaluate(config, state, test_sets, *, out_dir, progress, metadata) -> result`` or None
    a method's own test protocol (several outputs per case, test-time refinement), writing
    ``<out_dir>/metrics.json``; None (default) uses the engine's sliding-window evaluation of
    ``predict(...)["prob"]``.
``predict_source(config, state, case) -> {"prob": (*S, K), ...}`` or None
    whole-volume outputs of one case as read from a file (its own grid and intensities, no
    label), on that grid, for ``jaxseg predict``: for methods whose networks work on a fixed
    grid of their own rather than by sliding windows (Atlas-ISTN). None (default): ``jaxseg
    predict`` resamples to ``data.spacing``, normalises as the training data, predicts by
    sliding windows (``predict``) and resamples back.
``import_weights(config, state, state_dict, source) -> nets`` or None
    the networks of ``state`` with weights of a reference PyTorch checkpoint (a name -> array
    mapping read from ``source``); None when the method has no reference weights.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Method"]


def _same_case(config: Any, case: Any) -> Any:
    del config
    return case


def _no_transforms(config: Any, state: Any, workdir: str | os.PathLike) -> None:
    del config, state, workdir


def _same_split(config: Any, state: Any, split: Any, workdir: str | os.PathLike) -> Any:
    del config, state, workdir
    return split


def _same_test_case(config: Any, state: Any, case: Any) -> Any:
    del config, state
    return case


def _no_preparation(
    config: Any, state: Any, split: Any, workdir: str | os.PathLike
) -> tuple[Any, list]:
    del config, split, workdir
    return state, []


@dataclasses.dataclass(frozen=True)
class Method:
    """A method as the engine sees it; see the module docstring for each field's contract."""

    name: str
    settings: tuple[str, ...]
    default_config: Callable[..., Any]
    create_state: Callable[[Any, Any], Any]
    make_train_step: Callable[[Any], Callable]
    predict: Callable[[Any, Any, Any], Mapping[str, Any]]
    prepare_case: Callable[[Any, Any], Any] = _same_case
    transforms: Callable[[Any, Any, Any], Any] = _no_transforms
    prepare: Callable[[Any, Any, Any, Any], tuple[Any, list]] = _no_preparation
    training_data: Callable[[Any, Any, Any, Any], Any] = _same_split
    prepare_test_case: Callable[[Any, Any, Any], Any] = _same_test_case
    evaluate: Callable[..., dict] | None = None
    predict_source: Callable[[Any, Any, Any], dict] | None = None
    import_weights: Callable[[Any, Any, Mapping[str, Any], str], Any] | None = None

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"a method name must be an identifier, got {self.name!r}")
        missing = {"paper", "smoke"} - set(self.settings)
        if missing:
            raise ValueError(f"method {self.name!r} lacks the setting(s) {sorted(missing)}")
