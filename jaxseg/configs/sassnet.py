"""SASSNet (Li, Zhang, He, MICCAI 2020) on LA, as the reference train_gan_sdfloss.py.

Paper and code agree on the loss (Dice + 0.3 SDM MSE + ramped adversarial term), optimizers and
schedule; where the paper is silent the code is followed: the adversarial weight 0.01 ramps up
with ``sigmoid_rampup(iteration // 150, 40)`` (150 of the 6000 iterations a unit, so the full
weight at the end of the run), the SDM head is supervised on labelled items only, the
discriminator (Adam 1e-4, betas 0.9/0.99) is updated after the segmenter on the whole batch.
``loss.bce > 0`` adds the BCE term the reference logs but leaves out. Settings of
:mod:`jaxseg.configs.la`; the discriminator has 64 filters in ``paper*`` and 16 otherwise.
"""

from jaxseg.configs import la

SETTINGS = la.SETTINGS


def get_config(setting: str = "paper"):
    c = la.get_config(setting)
    c.method = "sassnet"
    c.model.disc_filters = 64 if setting.startswith("paper") else 16
    c.optim.seg = la.sgd()
    c.optim.disc = {"name": "adam", "lr": 1e-4, "b1": 0.9, "b2": 0.99}
    c.loss.update(
        beta=0.3,
        adv_weight=0.01,
        rampup=40.0,
        rampup_divisor=150 / la.PAPER_ITERATIONS,
        rampup_divisor_unit="run",
        bce=0.0,
    )
    return c
