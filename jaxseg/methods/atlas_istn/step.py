"""Atlas-ISTN's training step: eq. 14 on a batch of whole images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxseg.losses import mse
from jaxseg.methods.atlas_istn.config import check_config, epoch, learning_rate, omega
from jaxseg.methods.atlas_istn.model import (
    AtlasState,
    forward,
    one_hot,
    optimizer,
    registration_loss,
)

__all__ = ["make_train_step"]


def make_train_step(config: Any) -> Callable:
    """The pure step ``(state, batch, key) -> (state, metrics)``: one Adam step of both networks
    on ``L = L_s + omega (L_a2s + L_s2a + lambda L_reg)`` (eq. 14; VML: without ``L_s``).

    ``batch`` holds ``image (B, *S, 1)`` and ``label (B, *S)``; the step is deterministic (the
    key is unused). ``metrics``: ``loss`` and its terms ``loss_itn``, ``loss_a2s``,
    ``loss_s2a``, ``loss_reg``; the scheduled weight ``omega``; ``lr``, the learning rate of the
    update just taken; and the batch's hard foreground Dice of the ITN and of the warped atlas,
    ``train_dice_itn`` and ``train_dice_atlas``.
    """
    check_config(config)
    opt = optimizer(config)
    lr = learning_rate(config)
    lam = float(config.loss.lam)
    vml = config.model.variant == "vml"
    affine_from = int(config.loss.affine_from_epoch)

    def step(state: AtlasState, batch, key):
        del key
        target = one_hot(config, batch["label"])
        w = omega(config, state.step)
        affine_on = (epoch(config, state.step) >= affine_from).astype(jnp.float32)
        params = {name: net.params for name, net in state.nets.items()}

        def loss_fn(params):
            out = forward(config, params, batch["image"], state.atlas, affine_on=affine_on)
            reg_loss, terms = registration_loss(
                out, target, state.atlas["label"], a2s=1.0, s2a=1.0, lam=lam
            )
            seg = mse(out["itn"], target)
            loss = (0.0 if vml else seg) + w * reg_loss
            metrics = {
                "loss": loss,
                "loss_itn": seg,
                "loss_a2s": terms["a2s"],
                "loss_s2a": terms["s2a"],
                "loss_reg": terms["reg"],
                "omega": w,
                "train_dice_itn": _hard_dice(out["itn"], batch["label"]),
                "train_dice_atlas": _hard_dice(out["atlas_label"], batch["label"]),
            }
            return loss, metrics

        grads, metrics = jax.grad(loss_fn, has_aux=True)(params)
        nets = {name: net.apply_gradients(grads[name], opt) for name, net in state.nets.items()}
        # The optimizer's count before this update is the step index (both nets step together).
        metrics["lr"] = jnp.asarray(lr(state.step), jnp.float32)
        return state.replace(nets=nets), metrics

    return step


def _hard_dice(scores: jax.Array, label: jax.Array) -> jax.Array:
    """Dice of ``argmax(scores) > 0`` against ``label > 0`` over the batch (a training metric)."""
    pred = jnp.argmax(scores, axis=-1) > 0
    ref = label > 0
    inter = jnp.sum(pred & ref)
    return 2.0 * inter / jnp.maximum(jnp.sum(pred) + jnp.sum(ref), 1)
