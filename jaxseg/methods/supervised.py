"""The supervised V-Net baseline of the LA papers: one V-Net trained on the labelled cases only.

Loss: ``0.5 (BCE + Dice)`` of the segmentation head on the labelled items, the supervised loss
of the UA-MT baseline that SASSNet and DTML compare with (there with a two-class softmax; here the
one-channel sigmoid head that SASSNet and DTML use, so that the three methods share one network).
The SDM head is present but untrained. Optimizer ``optim.seg``: SGD 0.01, momentum 0.9, weight
decay 1e-4, x0.1 every 2500 iterations, as the semi-supervised methods. Batches come from
``data.labelled`` cases only (``data.unlabelled = 0`` in the configs), ``data.labelled_batch``
items each.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections

from jaxseg.methods import _vnet
from jaxseg.train import TrainState, create_train_state
from jaxseg.train.config import base_config
from jaxseg.train.optim import make_optimizer

__all__ = ["create_state", "default_config", "make_train_step", "predict"]


def default_config(setting: str = "paper") -> ml_collections.ConfigDict:
    """The config of this method in ``setting`` ("paper", "paper8", "synthetic", "smoke"):
    :func:`jaxseg.train.config.base_config` with the method's optimizers and loss settings
    (the reference values; see experiments/supervised/README.md)."""
    c = base_config(setting)
    c.method = "supervised"
    c.data.unlabelled = 0
    c.optim.seg = _vnet.la_sgd(c)
    return c


def create_state(config: Any, key: jax.Array) -> TrainState:
    """``TrainState`` with ``nets = {"seg": V-Net}``, its RNG seeded from ``key``."""
    init_key, rng = jax.random.split(key)
    seg = _vnet.init_vnet(config, make_optimizer(config.optim.seg), init_key)
    return create_train_state({"seg": seg}, rng)


def make_train_step(config: Any):
    """The pure step ``(state, batch, key) -> (state, metrics)``: one SGD step on
    ``0.5 (BCE + Dice)`` of the labelled items."""
    module = _vnet.vnet(config)
    optimizer = make_optimizer(config.optim.seg)

    def step(state: TrainState, batch, key):
        net = state.nets["seg"]
        label = batch["label"]
        weights = _vnet.item_weights(batch, label)

        def loss_fn(params):
            out, batch_stats = _vnet.apply_train(module, params, net, batch["image"], key)
            logits = out["seg"][..., 0]
            terms = _vnet.supervised_terms(logits, label, weights)
            loss = 0.5 * (terms["bce"] + terms["dice"])
            metrics = {
                "loss": loss,
                "loss_dice": terms["dice"],
                "loss_bce": terms["bce"],
                "train_dice": _vnet.hard_dice(logits, label, weights),
            }
            return loss, (batch_stats, metrics)

        grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(net.params)
        net = net.apply_gradients(grads, optimizer, batch_stats=batch_stats)
        return state.replace(nets={"seg": net}), metrics

    return step


def predict(config: Any, nets: dict, images: jax.Array) -> dict[str, jax.Array]:
    """``{"prob": sigmoid(seg) (B, *S, 1), "sdm": (B, *S, 1)}`` of images ``(B, *S, 1)``."""
    return _vnet.predict(config, nets["seg"], images)
