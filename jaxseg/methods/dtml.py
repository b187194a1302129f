"""DTML (Zhang & Zhang 2021): dual-task mutual learning of a segmentation and an SDM network.

Model bundle: ``{"seg": VNet, "sdm": VNet}``, two V-Nets of the same architecture: ``M_s`` uses
its segmentation head (sigmoid), ``M_d`` its SDM head (tanh). One step updates both from one
forward pass of each, as the reference ``train_la_dtml.py``::

    L_seg = 0.5 (BCE(seg, y) + Dice(sigmoid(seg), y))_lab                       (M_s)
    L_sdm = Dice(sigmoid(-k sdm), y)_lab                                       (M_d)
    c     = mean over ALL items (sigmoid(-k sdm) - sigmoid(seg))^2              (both)
    M_s minimises L_seg + w(t) c;  M_d minimises L_sdm + w(t) c

with ``k = 1500`` (``loss.k``) and ``w(t) = 1.0 * sigmoid_rampup(t // 150, 40)``
(``loss.consistency``, ``loss.rampup``, ``loss.rampup_divisor`` with its unit: 150 of the 6000
iterations, a fraction of the run in the shipped config). The reference back-propagates
both losses through both networks (``retain_graph=True``; nothing is detached), so each
network's gradient is that of ``L_seg + L_sdm + 2 w c``; this step differentiates that sum, which
reproduces the reference update (``loss.consistency_grad_factor = 2``; 1 gives the paper's
equations read literally, each network seeing ``w c`` once). The reference computes an L1 loss
between the predicted SDM and the SDM of the label but leaves it out of the loss;
``loss.sdm_l1 > 0`` adds it for ``M_d`` (the targets computed in the step with
:func:`jaxseg.shape.signed_distance_map`). Both networks use ``optim.seg`` (SGD 0.01, momentum
0.9, weight decay 1e-4, x0.1 after 2500 of the 6000 iterations) with their own optimizer
states.

Predictions (:func:`predict`): ``eval.output = "seg"`` (default) evaluates ``M_s``'s
segmentation, ``"sdm"`` the mask ``sigmoid(-k sdm)`` of ``M_d``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg.configs import dtml as configs
from jaxseg.losses import dice_loss, dual_task_consistency, mae
from jaxseg.methods import _vnet
from jaxseg.shape import sdm_to_mask, signed_distance_map
from jaxseg.train import TrainState, create_train_state

__all__ = ["METHOD", "create_state", "default_config", "make_train_step", "predict"]


def default_config(setting: str = "paper") -> ml_collections.ConfigDict:
    """The shipped config (:mod:`jaxseg.configs.dtml`) in ``setting`` ("paper", "paper8",
    "synthetic", "smoke")."""
    return configs.get_config(setting)


def create_state(config: Any, key: jax.Array) -> TrainState:
    """``TrainState`` with ``nets = {"seg": V-Net M_s, "sdm": V-Net M_d}``."""
    seg_key, sdm_key, rng = jax.random.split(key, 3)
    optimizer = _vnet.optimizer(config, "seg")
    nets = {
        "seg": _vnet.init_vnet(config, optimizer, seg_key),
        "sdm": _vnet.init_vnet(config, optimizer, sdm_key),
    }
    return create_train_state(nets, rng)


def make_train_step(config: Any):
    """The pure step ``(state, batch, key) -> (state, metrics)`` updating both networks."""
    module = _vnet.vnet(config)
    optimizer = _vnet.optimizer(config, "seg")
    k = float(config.loss.k)
    factor = float(config.loss.consistency_grad_factor)
    sdm_l1 = float(config.loss.sdm_l1)
    schedule = _vnet.ramp(config, config.loss.consistency)

    def step(state: TrainState, batch, key):
        nets = state.nets
        image, label, labelled = batch["image"], batch["label"], batch["labelled"]
        target = label == 1
        w_step = schedule(state.step)
        seg_key, sdm_key = jax.random.split(key)

        def loss_fn(params):
            seg_out, seg_stats = _vnet.apply_train(
                module, params["seg"], nets["seg"], image, seg_key
            )
            sdm_out, sdm_stats = _vnet.apply_train(
                module, params["sdm"], nets["sdm"], image, sdm_key
            )
            logits, sdm = seg_out["seg"][..., 0], sdm_out["sdm"][..., 0]
            terms = _vnet.supervised_terms(logits, label, labelled)
            loss_seg = 0.5 * (terms["bce"] + terms["dice"])
            loss_sdm = dice_loss(sdm_to_mask(sdm, k), target, weights=labelled)
            if sdm_l1:
                sdm_of = functools.partial(signed_distance_map, dtype=sdm.dtype)
                target_sdm = jax.vmap(sdm_of)(target.astype(jnp.int32))
                loss_sdm = loss_sdm + sdm_l1 * mae(sdm, target_sdm, weights=labelled)
            consistency = dual_task_consistency(sdm, logits, k=k)
            w = w_step.astype(consistency.dtype)
            loss = loss_seg + loss_sdm + factor * w * consistency
            metrics = {
                "loss": loss,
                "loss_seg": loss_seg + w * consistency,
                "loss_sdm": loss_sdm + w * consistency,
                "loss_dice": terms["dice"],
                "loss_bce": terms["bce"],
                "loss_sdm_dice": loss_sdm,
                "consistency": consistency,
                "consistency_weight": w,
                "train_dice": _vnet.hard_dice(logits, label, labelled),
            }
            return loss, ({"seg": seg_stats, "sdm": sdm_stats}, metrics)

        params = {name: net.params for name, net in nets.items()}
        grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(params)
        new = {
            name: nets[name].apply_gradients(grads[name], optimizer, batch_stats=stats[name])
            for name in ("seg", "sdm")
        }
        return state.replace(nets=new), metrics

    return step


def predict(config: Any, nets: dict, images: jax.Array) -> dict[str, jax.Array]:
    """``{"prob": (B, *S, 1), "sdm": (B, *S, 1)}``: ``prob`` is ``sigmoid(seg)`` of ``M_s``
    (``eval.output = "seg"``) or ``sigmoid(-k sdm)`` of ``M_d`` (``"sdm"``); ``sdm`` is
    ``M_d``'s SDM."""
    output = config.eval.get("output", "seg")
    if output not in ("seg", "sdm"):
        raise ValueError(f"DTML eval.output must be 'seg' or 'sdm', got {output!r}")
    seg = _vnet.predict(config, nets["seg"], images)
    sdm = _vnet.predict(config, nets["sdm"], images)["sdm"]
    prob = seg["prob"] if output == "seg" else sdm_to_mask(sdm, float(config.loss.k))
    return {"prob": prob, "sdm": sdm}


METHOD = _vnet.method("dtml", configs, create_state, make_train_step, predict)
