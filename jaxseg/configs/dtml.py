"""DTML (Zhang & Zhang 2021) on LA, as the reference train_la_dtml.py.

Where paper and code differ the code is followed: the SDM network is trained by the Dice of
``sigmoid(-1500 SDM)`` only (the L1 SDM loss is computed but unused in the code:
``loss.sdm_l1 = 0``), both networks use the LA papers' SGD, the consistency weight 1.0 ramps up
with ``sigmoid_rampup(iteration // 150, 40)`` (150 of the 6000 iterations a unit) and reaches
each network twice (``loss.consistency_grad_factor = 2``, see :mod:`jaxseg.methods.dtml`).
``eval.output = "sdm"`` evaluates the SDM network instead of the segmentation network. Settings
of :mod:`jaxseg.configs.la`.
"""

from jaxseg.configs import la

SETTINGS = la.SETTINGS


def get_config(setting: str = "paper"):
    c = la.get_config(setting)
    c.method = "dtml"
    c.optim.seg = la.sgd()
    c.loss.update(
        k=1500.0,
        consistency=1.0,
        rampup=40.0,
        rampup_divisor=150 / la.PAPER_ITERATIONS,
        rampup_divisor_unit="run",
        consistency_grad_factor=2.0,
        sdm_l1=0.0,
    )
    c.eval.output = "seg"
    return c
