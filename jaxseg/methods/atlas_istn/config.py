"""Atlas-ISTN's config, its epochs and the schedules counted in them.

Epochs are the paper's and the released code's unit for this method: ``train.epochs``,
``train.decay_epochs``, ``loss.fade_epoch``, ``loss.fade_width`` and ``loss.affine_from_epoch``
are counted in passes over the training cases, and the run length follows them:
``train.steps = train.epochs * steps_per_epoch`` with ``steps_per_epoch = data.labelled //
data.labelled_batch`` (the last partial batch dropped, as the reference's data loader). Both are
lazy references, so ``--set train.epochs=N`` (or ``data.labelled``, ``data.labelled_batch``)
rescales ``train.steps``; the epoch schedules are converted to steps from the final config.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxseg.configs import atlas_istn as configs

__all__ = [
    "SETTINGS",
    "check_config",
    "default_config",
    "epoch",
    "learning_rate",
    "omega",
    "steps_per_epoch",
]

SETTINGS = configs.SETTINGS


def default_config(setting: str = "paper", *, data: str = "letter_b") -> ml_collections.ConfigDict:
    """The shipped config (:func:`jaxseg.configs.atlas_istn.config`) for the generated ``data``
    family ("letter_b": 2D, 64 x 64; "cardiac_like": the 3D phantoms) in ``setting``
    ("paper", "cpu", "smoke")."""
    return configs.config(setting, data)


def steps_per_epoch(config: Any) -> int:
    """Training steps per pass over the ``data.labelled`` training cases in batches of
    ``data.labelled_batch`` (the last partial batch is dropped).

    Raises:
      ValueError: if ``data.labelled`` is not a count of at least one batch.
    """
    n, batch = int(config.data.labelled), int(config.data.labelled_batch)
    if batch < 1 or n < batch:
        raise ValueError(
            f"data.labelled ({n}) must be the number of training cases, at least "
            f"data.labelled_batch ({batch}) >= 1: an Atlas-ISTN epoch is "
            "data.labelled // data.labelled_batch steps"
        )
    return n // batch


def epoch(config: Any, step: jax.Array) -> jax.Array:
    """1-based epoch of the (0-based) ``step`` about to be taken, int32 like ``step``."""
    return step // steps_per_epoch(config) + 1


def omega(config: Any, step: jax.Array) -> jax.Array:
    """Weight of the registration terms at ``step`` (0-based): eq. 24's fade-in
    ``1 / (1 + exp(-(epoch - loss.fade_epoch) / loss.fade_width))`` in 1-based epochs, times
    ``loss.omega`` (``loss.fade_epoch = -1``: no fade-in). Float32 scalar."""
    fade = float(config.loss.fade_epoch)
    current = epoch(config, jnp.asarray(step)).astype(jnp.float32)
    ramp = jax.nn.sigmoid((current - fade) / float(config.loss.fade_width))
    return float(config.loss.omega) * (ramp if fade >= 0 else jnp.ones_like(ramp))


def learning_rate(config: Any) -> optax.Schedule:
    """The learning rate of update ``count`` (0-based): ``train.lr`` halved every
    ``train.decay_epochs`` epochs in per-epoch steps, PyTorch's ``ExponentialLR(gamma=0.5 **
    (1 / decay_epochs))`` stepped after every epoch as in the released code."""
    return optax.exponential_decay(
        float(config.train.lr),
        transition_steps=steps_per_epoch(config),
        decay_rate=0.5 ** (1.0 / float(config.train.decay_epochs)),
        staircase=True,
    )


def check_config(config: Any) -> None:
    """Raise ValueError naming the first setting Atlas-ISTN cannot run with."""
    if config.model.variant not in ("istn", "vml"):
        raise ValueError(f"model.variant must be 'istn' or 'vml', got {config.model.variant!r}")
    if config.stn.transform not in ("full", "svf", "affine"):
        raise ValueError(
            f"stn.transform must be 'full', 'svf' or 'affine', got {config.stn.transform!r}"
        )
    if int(config.data.num_classes) < 2:
        raise ValueError(f"data.num_classes must be >= 2, got {config.data.num_classes}")
    if any(int(s) % 16 for s in config.data.size):
        raise ValueError(f"data.size must be divisible by 16, got {tuple(config.data.size)}")
    if float(config.train.decay_epochs) <= 0:
        raise ValueError(f"train.decay_epochs must be positive, got {config.train.decay_epochs}")
    steps_per_epoch(config)
