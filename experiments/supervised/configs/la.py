"""Supervised V-Net on the labelled LA cases only: the baseline of SASSNet's and DTML's tables.

Settings: "paper" (16 labelled, 6000 iterations, batch 2, patch 112x112x80), "paper8",
"synthetic" and "smoke" (see jaxseg.train.config). The labelled batch is 2, the labelled half of
the semi-supervised methods' 2 + 2, so that every method sees the same labelled items per step.
"""

from jaxseg.train.config import base_config, scaled


def get_config(setting: str = "paper"):
    c = base_config(setting)
    c.method = "supervised"
    c.data.unlabelled = 0
    c.optim.seg = {
        "name": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "decay_every": scaled(c, 2500),
        "decay_rate": 0.1,
    }
    return c
