"""The Left Atrium base shared by the supervised V-Net, SASSNet and DTML configs.

Settings:

* ``paper``: LA 2018 in the UA-MT preprocessing (``data.root``), 16 labelled and 64 unlabelled
  of the 80 training cases, the 20 test cases; V-Net with 16 filters; 6000 iterations of batch
  2 + 2 patches of 112x112x80; sliding window with stride 18x18x4; the last checkpoint.
* ``paper8``: the same with 8 labelled cases.
* ``cpu``: the real data of ``paper8`` at a size that trains in 10 (supervised) to 30 (DTML)
  minutes on 2 CPU cores: 8 labelled cases, the last 8 of the 80 training cases for validation,
  the other 64 unlabelled; every case resampled to 1.5 mm (2.4 times coarser than the 0.625 mm
  data) and kept in memory; patches of 48x48x32, 72x72x48 mm, about the papers' 112x112x80 at
  0.625 mm (70x70x50 mm; the V-Net needs sizes divisible by 16); an 8-filter V-Net; 1000
  iterations of batch 2 + 2; validation every 250 and the checkpoint of the best validation
  Dice. The test cases are scored on their own 0.625 mm grid (``eval.grid = "source"``: the
  network predicts at 1.5 mm with a stride of 8x8x2, the papers' 18x18x4 in mm, rounded, and
  its probabilities are resampled back), so Dice, 95HD and ASD in voxels have the papers'
  units. (At 1.25 mm with 64x64x32 patches, 500 iterations, the supervised V-Net reached a
  validation Dice of 0.50 only: too few iterations at the papers' learning rate.)
* ``synthetic``: the built-in LA-like phantoms at 64x64x48 (1.1 mm), 4 labelled and 12
  unlabelled, 4 validation and 8 test phantoms; 8-filter V-Net, 500 iterations, patches of
  48x48x32, the checkpoint of the best validation Dice. A few minutes on 2 CPU cores.
* ``smoke``: 32^3 phantoms, 4-filter V-Net, 6 iterations: about a minute on 2 CPU cores.

Schedules are fractions of the run (``*_unit = "run"``): the papers' values over their 6000
iterations, so that any ``train.steps`` keeps their shape.
"""

from jaxseg.train.config import base_config

SETTINGS = ("paper", "paper8", "cpu", "synthetic", "smoke")

#: Iterations of the LA papers' runs, the denominator of their schedules as fractions.
PAPER_ITERATIONS = 6000


def sgd() -> dict:
    """The LA papers' V-Net optimizer: SGD 0.01, momentum 0.9, weight decay 1e-4 (PyTorch's L2),
    x0.1 after every 2500 of the 6000 iterations."""
    return {
        "name": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "decay_every": 2500 / PAPER_ITERATIONS,
        "decay_every_unit": "run",
        "decay_rate": 0.1,
    }


def get_config(setting: str = "paper"):
    """The LA base in ``setting`` (one of :data:`SETTINGS`); ``method`` is left to the caller."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; expected one of {list(SETTINGS)}")
    c = base_config()
    c.seed = 1337  # the reference scripts' seed
    c.data.update(
        source="la_h5",
        labelled=16,
        unlabelled=-1,
        patch=(112, 112, 80),
        labelled_batch=2,
        unlabelled_batch=2,
    )
    # The built-in phantoms (data.source = "synthetic"), the size of LA by default.
    c.data.synthetic = {
        "family": "la_like",
        "train": 80,
        "val": 0,
        "test": 20,
        "shape": (112, 112, 80),
        "spacing": (0.625,) * 3,
    }
    c.model.update(n_filters=16, normalization="batchnorm", has_dropout=True)
    c.train.update(steps=PAPER_ITERATIONS, checkpoint_every=1000, log_every=10, eval_every=0)
    c.eval.update(patch=(112, 112, 80), stride=(18, 18, 4), batch_size=1, checkpoint="last")
    if setting == "paper8":
        c.data.labelled = 8
    elif setting == "cpu":
        c.data.update(labelled=8, val=8, spacing=(1.5,) * 3, patch=(48, 48, 32), cache=True)
        c.model.n_filters = 8
        c.train.update(steps=1000, checkpoint_every=250, log_every=10, eval_every=250)
        c.eval.update(
            patch=(48, 48, 32), stride=(8, 8, 2), batch_size=4, checkpoint="best", grid="source"
        )
    elif setting in ("synthetic", "smoke"):
        c.data.update(source="synthetic", labelled=4, patch=(48, 48, 32))
        c.data.synthetic.update(train=16, val=4, test=8, shape=(64, 64, 48), spacing=(1.1,) * 3)
        c.model.n_filters = 8
        c.train.update(steps=500, checkpoint_every=250, log_every=10, eval_every=250)
        c.eval.update(patch=(48, 48, 32), stride=(8, 8, 8), batch_size=4, checkpoint="best")
    if setting == "smoke":
        c.data.update(labelled=2, patch=(32, 32, 16))
        c.data.synthetic.update(train=4, val=1, test=2, shape=(32, 32, 32), spacing=(2.2,) * 3)
        c.model.n_filters = 4
        c.train.update(steps=6, checkpoint_every=3, log_every=1, eval_every=3)
        c.eval.update(patch=(32, 32, 16), stride=(16, 16, 8), batch_size=2, num_figures=1)
    return c
