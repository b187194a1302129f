"""DTML on LA (Zhang & Zhang 2021), as the reference train_la_dtml.py.

Settings: "paper" (16 labelled of 80, 6000 iterations, batch 2 + 2, patch 112x112x80), "paper8",
"synthetic" and "smoke" (see jaxseg.train.config). Where paper and code differ the code is
followed: the SDM network is trained by the Dice of sigmoid(-1500 SDM) only (the L1 SDM loss is
computed but unused in the code: loss.sdm_l1 = 0), both networks use SGD 0.01 (momentum 0.9,
weight decay 1e-4, x0.1 every 2500 iterations), the consistency weight 1.0 ramps up with
sigmoid_rampup(iteration // 150, 40) and reaches each network twice (loss.consistency_grad_factor
= 2, see jaxseg.methods.dtml). Shorter runs scale the 150-iteration ramp unit and the
2500-iteration learning-rate step with their length.
"""

from jaxseg.methods import dtml


def get_config(setting: str = "paper"):
    return dtml.default_config(setting)
