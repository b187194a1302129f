"""SASSNet on LA (Li, Zhang, He, MICCAI 2020), as the reference train_gan_sdfloss.py.

Settings: "paper" (16 labelled of 80, 6000 iterations, batch 2 + 2, patch 112x112x80), "paper8"
(8 labelled), "synthetic" and "smoke" (see jaxseg.train.config). Paper and code agree on the
loss (Dice + 0.3 SDM MSE + ramped adversarial term), optimizers and schedule; where the paper is
silent the code is followed: the adversarial weight 0.01 ramps up with
sigmoid_rampup(iteration // 150, 40), the SDM head is supervised on labelled items only, and the
discriminator is updated after the segmenter on the whole batch. Shorter runs scale the
150-iteration ramp unit and the 2500-iteration learning-rate step with their length.
"""

from jaxseg.train.config import base_config, scaled


def get_config(setting: str = "paper"):
    c = base_config(setting)
    c.method = "sassnet"
    c.model.disc_filters = 64 if setting.startswith("paper") else 16
    c.optim.seg = {
        "name": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "decay_every": scaled(c, 2500),
        "decay_rate": 0.1,
    }
    c.optim.disc = {"name": "adam", "lr": 1e-4, "b1": 0.9, "b2": 0.99}
    c.loss = {
        "beta": 0.3,
        "adv_weight": 0.01,
        "rampup": 40.0,
        "rampup_divisor": scaled(c, 150),
        "bce": 0.0,
    }
    return c
