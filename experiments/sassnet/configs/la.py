"""SASSNet on LA (Li, Zhang, He, MICCAI 2020), as the reference train_gan_sdfloss.py.

Settings: "paper" (16 labelled of 80, 6000 iterations, batch 2 + 2, patch 112x112x80), "paper8"
(8 labelled), "synthetic" and "smoke" (see jaxseg.train.config). Paper and code agree on the
loss (Dice + 0.3 SDM MSE + ramped adversarial term), optimizers and schedule; where the paper is
silent the code is followed: the adversarial weight 0.01 ramps up with
sigmoid_rampup(iteration // 150, 40), the SDM head is supervised on labelled items only, and the
discriminator is updated after the segmenter on the whole batch. Shorter runs scale the
150-iteration ramp unit and the 2500-iteration learning-rate step with their length.
"""

from jaxseg.methods import sassnet


def get_config(setting: str = "paper"):
    return sassnet.default_config(setting)
