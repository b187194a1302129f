"""The config shipped as ``jaxseg.configs.atlas_istn`` (``jaxseg train atlas_istn:SETTING``).

Atlas-ISTN on letter B, the 2D proof of concept of Sinclair et al. 2022 (section 3.1).

Settings:

* ``paper``: the released config.json: 1000 training cases at 64 x 64 (spacing 2), 300 epochs
  of batch 10, Adam 1e-3 halved every 300 epochs, loss fade-in at epoch 25, lambda 500,
  atlas rate 0.01, 50 refinement iterations; tested on 100 clean and 100 corrupted cases.
* ``cpu``: the same protocol scaled to 2 CPU cores (about 20 minutes): the 1000 training
  cases, 30 epochs, fade-in at epoch 3; refinement also at lambda 50 and 5000 (Fig. 8).
* ``smoke``: 8 training cases at 32 x 32, 2 epochs.

By default the built-in generator (:func:`jaxseg.data.synthetic.letter_b`, ``data.source =
"synthetic"``) draws the cases; the released PNG set is read with ``--set data.source=png2d
--set data.root=DIR`` (the folder holding ``clean/``, ``corrupt/`` and the CSV lists: the first
``data.labelled`` cases of train.csv, and ``data.test`` of val.csv as "clean" and of
test.corrupt.csv as "corrupt")::

    jaxseg train experiments/atlas_istn/configs/letter_b.py:cpu --workdir runs/letter_b \\
        --set data.source=png2d --set data.root=DIR

Epoch counts (``train.epochs``, ``train.decay_epochs``, ``loss.fade_epoch``,
``loss.fade_width``) are in epochs, the paper's unit; ``train.steps`` follows
``train.epochs * (data.labelled // data.labelled_batch)``.

Expected (``cpu`` on the released data): see experiments/atlas_istn/README.md.
"""

from jaxseg.configs.atlas_istn import SETTINGS, get_config

__all__ = ["SETTINGS", "get_config"]
