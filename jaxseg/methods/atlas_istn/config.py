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

from jaxseg.train.config import base_config

__all__ = [
    "SETTINGS",
    "check_config",
    "default_config",
    "epoch",
    "learning_rate",
    "omega",
    "steps_per_epoch",
]

SETTINGS = ("paper", "cpu", "smoke")

_FAMILIES = ("letter_b", "cardiac_like")


def default_config(setting: str = "paper", *, data: str = "letter_b") -> ml_collections.ConfigDict:
    """Atlas-ISTN config for the generated ``data`` family ("letter_b": 2D, 64 x 64 at spacing
    2, as the released config.json; "cardiac_like": the 3D multi-structure phantoms) in
    ``setting``:

    * ``paper``: the released settings (letter B: 1000 training cases, 300 epochs, batch 10,
      Adam 1e-3 halved every 300 epochs, fade-in at epoch 25, lambda 500, eta 0.01, 50
      refinement iterations; cardiac: 800 epochs, decay 400, fade-in 200, 64^3).
    * ``cpu``: letter B on 2 CPU cores in about 20 minutes: the 1000 training cases, 30 epochs
      (the fade-in at epoch 3, its width and the decay scaled by the same factor, atlas rate
      0.1 so that the atlas forgets its initial mean as fast per run), refinement also at
      lambda 50 and 5000; 3D: 40 phantoms at 32^3, 40 epochs of batch 2.
    * ``smoke``: a few small cases and steps, for tests.

    The data section is the engine's (:mod:`jaxseg.data.sources`): ``source="synthetic"`` with
    ``synthetic.family = data``; ``source="png2d"`` and ``root`` for the released letter-B PNG
    set, ``source="nifti"`` and ``root`` for a Decathlon or nnU-Net folder. Every training case
    is labelled: ``data.labelled`` is the number of training cases (a count, not -1: the epoch
    length follows it; ``synthetic.train`` is the same reference), ``unlabelled = val = 0``;
    ``data.test`` is the number of cases of each test set (``synthetic.test`` the same
    reference; a cap for png2d). Atlas-ISTN's own data keys: ``size`` (the grid every case is
    resampled to, each axis divisible by 16) and ``num_classes`` (``K``, background included).
    Whole images of ``size`` are trained on (``data.patch``) in batches of
    ``data.labelled_batch``.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; expected one of {list(SETTINGS)}")
    if data not in _FAMILIES:
        raise ValueError(f"data must be one of {list(_FAMILIES)}, got {data!r}")
    three_d = data == "cardiac_like"
    c = base_config()
    c.method = "atlas_istn"
    c.seed = 42  # the reference scripts' seed
    c.data.update(
        {
            "source": "synthetic",
            "labelled": 1000 if not three_d else 200,
            "unlabelled": 0,
            "val": 0,
            "test": 100 if not three_d else 40,
            "labelled_batch": 10,
            "unlabelled_batch": 0,
            "augment": False,
            "num_workers": 0,
        }
    )
    # letter B: drawn at 128 x 128 (1 mm pixels) and resampled to data.size as the released
    # PNGs; cardiac: a 128 mm field of view.
    c.data.synthetic = ml_collections.ConfigDict(
        {
            "family": data,
            "train": 0,  # the references below: data.labelled and data.test
            "val": 0,
            "test": 0,
            "shape": (128, 128) if not three_d else (64, 64, 64),
            "spacing": () if not three_d else (2.0, 2.0, 2.0),
        }
    )
    c.data.size = (64, 64) if not three_d else (64, 64, 64)
    c.data.num_classes = 2 if not three_d else 6
    c.model = ml_collections.ConfigDict({"variant": "istn"})
    c.stn = ml_collections.ConfigDict({"transform": "full", "integration_steps": 6})
    c.atlas = ml_collections.ConfigDict({"rate": 0.01, "fixed": False})
    c.loss = ml_collections.ConfigDict(
        {
            "lam": 500.0,
            "omega": 1.0,  # weight of the registration terms after the fade-in
            "fade_epoch": 25 if not three_d else 200,
            "fade_width": 25.0,
            "affine_from_epoch": 0,
        }
    )
    c.train.update(epochs=300 if not three_d else 800, checkpoint_every=1000, log_every=10)
    c.train.decay_epochs = 300 if not three_d else 400
    c.train.lr = 1e-3
    c.refine = ml_collections.ConfigDict(
        {"steps": 50, "lr": 1e-3, "a2s": 1.0, "s2a": 0.0, "lam": -1.0, "from_scratch": False}
    )
    c.eval.update(num_figures=4)
    c.eval.refine_lams = ()
    c.eval.chunk = 50 if not three_d else 4
    if setting == "cpu":
        # 1/10 of the paper's epochs; the fade-in and the decay scaled by the same factor, and
        # the atlas rate raised so that 30 updates forget the initial atlas as 300 of 0.01 do:
        # 1 - 0.99 ** 10 = 0.096.
        c.train.update(epochs=30, decay_epochs=30, checkpoint_every=500)
        c.loss.update(fade_epoch=3, fade_width=2.5)
        c.atlas.rate = 0.1
        c.eval.refine_lams = (50.0, 5000.0)
        if three_d:
            # Batches of 2 so that the 40 epochs are 800 steps: with batches of 10 (160 steps)
            # the ITN is still on the all-background plateau of its MSE loss at the end.
            c.data.update(labelled=40, test=10, size=(32, 32, 32), labelled_batch=2)
            c.data.synthetic.update(shape=(32, 32, 32), spacing=(4.0, 4.0, 4.0))
            c.train.update(epochs=40, decay_epochs=20)
            c.loss.update(fade_epoch=10, fade_width=5.0)
    elif setting == "smoke":
        c.data.update(labelled=8, test=4, labelled_batch=4)
        c.data.size = (32, 32) if not three_d else (32, 32, 32)
        if three_d:
            c.data.synthetic.update(shape=(32, 32, 32), spacing=(4.0, 4.0, 4.0))
        c.train.update(epochs=2, decay_epochs=2, checkpoint_every=2, log_every=1)
        c.loss.update(fade_epoch=1, fade_width=1.0)
        c.refine.steps = 5
        c.eval.update(chunk=4, num_figures=1)
    # The generated sets have as many cases as the split takes.
    c.data.synthetic.train = c.data.get_ref("labelled")
    c.data.synthetic.test = c.data.get_ref("test")
    # Whole images; ``jaxseg predict`` runs the ITN on whole images of data.size too.
    c.data.patch = c.data.get_ref("size")
    c.eval.patch = c.data.get_ref("size")
    c.eval.stride = c.data.get_ref("size")
    c.eval.batch_size = 1
    c.train.steps = c.train.get_ref("epochs") * (
        c.data.get_ref("labelled") // c.data.get_ref("labelled_batch")
    )
    return c


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
