"""The supervised V-Net baseline of the LA papers: one V-Net trained on the labelled cases only.

Loss: ``0.5 (BCE + Dice)`` of the segmentation head on the labelled items, the supervised loss
of the UA-MT baseline that SASSNet and DTML compare with (there with a two-class softmax; here the
one-channel sigmoid head that SASSNet and DTML use, so that the three methods share one network).
The SDM head is present but untrained. Optimizer ``optim.seg`` (the LA papers' SGD in the shipped
config, :mod:`jaxseg.configs.supervised`). Batches come from the labelled cases only
(``data.unlabelled = 0`` in the config), ``data.labelled_batch`` items each.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections

from jaxseg.configs import supervised as configs
from jaxseg.methods import _vnet
from jaxseg.train import TrainState, create_train_state

__all__ = ["METHOD", "create_state", "default_config", "make_train_step", "predict"]


def default_config(setting: str = "paper") -> ml_collections.ConfigDict:
    """The shipped config (:mod:`jaxseg.configs.supervised`) in ``setting`` ("paper", "paper8",
    "synthetic", "smoke")."""
    return configs.get_config(setting)


def create_state(config: Any, key: jax.Array) -> TrainState:
    """``TrainState`` with ``nets = {"seg": V-Net}``, its RNG seeded from ``key``."""
    init_key, rng = jax.random.split(key)
    seg = _vnet.init_vnet(config, _vnet.optimizer(config, "seg"), init_key)
    return create_train_state({"seg": seg}, rng)


def make_train_step(config: Any):
    """The pure step ``(state, batch, key) -> (state, metrics)``: one SGD step on
    ``0.5 (BCE + Dice)`` of the labelled items."""
    module = _vnet.vnet(config)
    optimizer = _vnet.optimizer(config, "seg")

    def step(state: TrainState, batch, key):
        net = state.nets["seg"]
        label, labelled = batch["label"], batch["labelled"]

        def loss_fn(params):
            out, batch_stats = _vnet.apply_train(module, params, net, batch["image"], key)
            logits = out["seg"][..., 0]
            terms = _vnet.supervised_terms(logits, label, labelled)
            loss = 0.5 * (terms["bce"] + terms["dice"])
            metrics = {
                "loss": loss,
                "loss_dice": terms["dice"],
                "loss_bce": terms["bce"],
                "train_dice": _vnet.hard_dice(logits, label, labelled),
            }
            return loss, (batch_stats, metrics)

        grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(net.params)
        net = net.apply_gradients(grads, optimizer, batch_stats=batch_stats)
        return state.replace(nets={"seg": net}), metrics

    return step


def predict(config: Any, nets: dict, images: jax.Array) -> dict[str, jax.Array]:
    """``{"prob": sigmoid(seg) (B, *S, 1), "sdm": (B, *S, 1)}`` of images ``(B, *S, 1)``."""
    return _vnet.predict(config, nets["seg"], images)


METHOD = _vnet.method("supervised", configs, create_state, make_train_step, predict)
