"""Supervised V-Net on the labelled LA cases only: the baseline of SASSNet's and DTML's tables.

Settings: "paper" (16 labelled, 6000 iterations, batch 2, patch 112x112x80), "paper8",
"synthetic" and "smoke" (see jaxseg.train.config). The labelled batch is 2, the labelled half of
the semi-supervised methods' 2 + 2, so that every method sees the same labelled items per step.
"""

from jaxseg.methods import supervised


def get_config(setting: str = "paper"):
    return supervised.default_config(setting)
