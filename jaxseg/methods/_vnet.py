"""Pieces shared by the V-Net methods of the LA papers (supervised, SASSNet, DTML).

Which items of a batch are supervised is read from ``batch["labelled"]`` (see
:mod:`jaxseg.data.pipeline`), never from their position: supervised terms are means over the
labelled items only, computed with per-item weights, so that the same step runs on any batch
layout and on a batch sharded over several devices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxseg.losses import dice_loss
from jaxseg.nn import VNet
from jaxseg.train import NetState, create_net_state
from jaxseg.train.config import scaled


def la_sgd(config: Any) -> dict[str, Any]:
    """The LA papers' V-Net optimizer section: SGD 0.01, momentum 0.9, weight decay 1e-4,
    x0.1 every 2500 iterations (scaled to ``config.train.steps``, see
    :func:`jaxseg.train.config.scaled`)."""
    return {
        "name": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "decay_every": scaled(config, 2500),
        "decay_rate": 0.1,
    }


def vnet(config: Any) -> VNet:
    """The V-Net of ``config.model``: one output channel (sigmoid segmentation, tanh SDM)."""
    return VNet(
        n_classes=1,
        n_filters=config.model.n_filters,
        normalization=config.model.normalization,
        has_dropout=config.model.has_dropout,
    )


def example_image(config: Any) -> jax.Array:
    """A zero batch of one patch, ``(1, *patch, 1)``, to initialise networks."""
    return jnp.zeros((1, *config.data.patch, 1), jnp.float32)


def init_vnet(config: Any, optimizer: optax.GradientTransformation, key: jax.Array) -> NetState:
    """A fresh V-Net state (parameters initialised as PyTorch's defaults) with ``optimizer``."""
    return create_net_state(vnet(config), optimizer, key, example_image(config), train=False)


def apply_train(
    module: VNet, params: Any, net: NetState, image: jax.Array, key: jax.Array
) -> tuple[dict[str, jax.Array], Any]:
    """Training-mode outputs of ``module`` with ``params`` and the new batch statistics."""
    variables = {"params": params}
    if net.batch_stats:
        variables["batch_stats"] = net.batch_stats
    out, updates = module.apply(
        variables, image, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
    )
    return out, updates.get("batch_stats", net.batch_stats)


def apply_eval(module: VNet, net: NetState, image: jax.Array) -> dict[str, jax.Array]:
    """Evaluation-mode outputs (running batch statistics, no dropout)."""
    return module.apply(net.variables, image, train=False)


def item_weights(batch: Mapping[str, jax.Array], like: jax.Array) -> jax.Array:
    """``batch["labelled"]`` as float weights shaped ``(B, 1, ..., 1)`` to broadcast with
    ``like`` ``(B, *S)``."""
    w = batch["labelled"].astype(jnp.float32)
    return w.reshape(w.shape + (1,) * (like.ndim - 1))


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean of ``values`` ``(B, *S)`` over the items with weight 1 (0 if there are none)."""
    per_item = values[0].size
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights) * per_item, 1.0)


def supervised_terms(
    seg_logits: jax.Array, label: jax.Array, weights: jax.Array
) -> dict[str, jax.Array]:
    """Soft Dice (over all labelled voxels at once, as the reference) and binary cross-entropy
    of the segmentation logits ``(B, *S)`` against ``label == 1``, on the labelled items."""
    target = (label == 1).astype(jnp.float32)
    probs = jax.nn.sigmoid(seg_logits)
    dice = dice_loss(probs * weights, target * weights)
    bce = weighted_mean(optax.sigmoid_binary_cross_entropy(seg_logits, target), weights)
    return {"dice": dice, "bce": bce}


def hard_dice(seg_logits: jax.Array, label: jax.Array, weights: jax.Array) -> jax.Array:
    """Dice of the thresholded prediction on the labelled items (a training metric)."""
    pred = (seg_logits > 0).astype(jnp.float32) * weights
    ref = (label == 1).astype(jnp.float32) * weights
    return 2 * jnp.sum(pred * ref) / jnp.maximum(jnp.sum(pred) + jnp.sum(ref), 1.0)


def predict(config: Any, net: NetState, images: jax.Array) -> dict[str, jax.Array]:
    """``{"prob": sigmoid(seg), "sdm": tanh SDM}``, each ``(B, *S, 1)``, of a V-Net in
    evaluation mode on images ``(B, *S, 1)``."""
    out = apply_eval(vnet(config), net, images)
    return {"prob": jax.nn.sigmoid(out["seg"]), "sdm": out["sdm"].astype(jnp.float32)}
