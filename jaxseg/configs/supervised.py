"""Supervised V-Net on the labelled LA cases only: the baseline rows of SASSNet's and DTML's tables.

Loss ``0.5 (BCE + Dice)`` of the segmentation head on the labelled items, the LA papers' SGD
(:func:`jaxseg.configs.la.sgd`), batches of the 2 labelled items of the semi-supervised methods'
2 + 2, so that every method sees the same labelled items per step. Settings of
:mod:`jaxseg.configs.la`.
"""

from jaxseg.configs import la

SETTINGS = la.SETTINGS


def get_config(setting: str = "paper"):
    c = la.get_config(setting)
    c.method = "supervised"
    c.data.update(unlabelled=0, unlabelled_batch=0)
    c.optim.seg = la.sgd()
    return c
