"""Atlas-ISTN (Sinclair et al., MedIA 2022) on letter B, its 2D proof of concept (section 3.1).

Settings ``paper`` (the released config.json), ``cpu`` (about 20 minutes on 2 CPU cores) and
``smoke``; the built-in letter-B generator by default, the released PNG set with
``--set data.source=png2d --set data.root=DIR``. :func:`config` also builds the 3D settings
(:mod:`jaxseg.configs.atlas_istn_3d`). Epochs are this method's unit (see
:mod:`jaxseg.methods.atlas_istn.config`).
"""

from __future__ import annotations

import ml_collections

from jaxseg.train.config import base_config

SETTINGS = ("paper", "cpu", "smoke")

_FAMILIES = ("letter_b", "cardiac_like")


def config(setting: str = "paper", data: str = "letter_b") -> ml_collections.ConfigDict:
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
    # What `jaxseg predict` writes: "refine" (the paper's final output), "one_pass" or "itn".
    c.eval.predict_output = "refine"
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


def get_config(setting: str = "paper") -> ml_collections.ConfigDict:
    return config(setting, "letter_b")
