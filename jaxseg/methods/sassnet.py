"""SASSNet (Li, Zhang, He, MICCAI 2020): shape-aware adversarial semi-supervised segmentation.

Model bundle: ``{"seg": VNet, "disc": Discriminator3D}``. The V-Net has a segmentation head
(sigmoid) and an SDM head (tanh); the discriminator sees (predicted SDM, image) pairs and tells
whether they come from a labelled (class 1) or an unlabelled (class 0) volume.

One training step, as the reference ``train_gan_sdfloss.py``:

1. **Segmenter** (``optim.seg``: SGD 0.01, momentum 0.9, weight decay 1e-4, x0.1 after 2500 of
   the 6000 iterations), the discriminator held fixed in evaluation mode, loss (paper eq. 6)::

       L_G = Dice(sigmoid(seg), y)_lab + beta * MSE(sdm, SDM(y))_lab + w(t) * CE(D(sdm_u, x_u), 1)

   with ``beta = 0.3`` (``loss.beta``) and ``w(t) = 0.01 * sigmoid_rampup(t // 150, 40)``
   (``loss.adv_weight``, ``loss.rampup``, ``loss.rampup_divisor`` with its unit: 150 of the
   6000 iterations, a fraction of the run in the shipped config). The SDM targets are computed
   in the step with :func:`jaxseg.shape.signed_distance_map` (the reference's ``compute_sdf``:
   normalised, negative inside, 0 on the boundary). The reference logs a BCE term but leaves it
   out of the loss; so does this step (``loss.bce`` > 0 adds it).
2. **Discriminator** (``optim.disc``: Adam 1e-4, betas 0.9/0.99) on the whole batch, with the
   *updated* segmenter's SDMs recomputed in evaluation mode and held fixed, loss (eq. 4-5)
   ``CE(D(sdm, x), labelled)``.

The order and the modes follow the reference code; the paper alternates the same way.
Predictions (:func:`predict`) are the sigmoid of the segmentation head, the output the
reference ``test_LA.py`` evaluates.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg.configs import sassnet as configs
from jaxseg.losses import adversarial_loss, generator_adversarial_loss, mse
from jaxseg.methods import _vnet
from jaxseg.nn import Discriminator3D
from jaxseg.shape import signed_distance_map
from jaxseg.train import TrainState, create_net_state, create_train_state
from jaxseg.train.config import compute_dtype

__all__ = ["METHOD", "create_state", "default_config", "make_train_step", "make_updates", "predict"]


def _discriminator(config: Any) -> Discriminator3D:
    # The precision's compute dtype: that of its parameters and inputs, or bfloat16.
    return Discriminator3D(ndf=config.model.get("disc_filters", 64), dtype=compute_dtype(config))


def default_config(setting: str = "paper") -> ml_collections.ConfigDict:
    """The shipped config (:mod:`jaxseg.configs.sassnet`) in ``setting`` ("paper", "paper8",
    "synthetic", "smoke")."""
    return configs.get_config(setting)


def create_state(config: Any, key: jax.Array) -> TrainState:
    """``TrainState`` with ``nets = {"seg": V-Net, "disc": Discriminator3D}``."""
    seg_key, disc_key, rng = jax.random.split(key, 3)
    seg = _vnet.init_vnet(config, _vnet.optimizer(config, "seg"), seg_key)
    image = _vnet.example_image(config)
    disc = create_net_state(
        _discriminator(config),
        _vnet.optimizer(config, "disc"),
        disc_key,
        image,
        image,
        train=False,
    )
    return create_train_state({"seg": seg, "disc": disc}, rng)


def make_train_step(config: Any):
    """The pure step ``(state, batch, key) -> (state, metrics)``: the segmenter update, then
    the discriminator update (see the module docstring)."""
    update_generator, update_discriminator = make_updates(config)

    def step(state: TrainState, batch, key):
        seg_key, disc_key = jax.random.split(key)
        state, metrics = update_generator(state, batch, seg_key)
        state, disc_metrics = update_discriminator(state, batch, disc_key)
        return state, {**metrics, **disc_metrics}

    return step


def make_updates(config: Any):
    """``(update_generator, update_discriminator)``, the two halves of :func:`make_train_step`,
    each ``(state, batch, key) -> (state, metrics)`` and touching only its own network."""
    seg_module, disc_module = _vnet.vnet(config), _discriminator(config)
    seg_opt, disc_opt = _vnet.optimizer(config, "seg"), _vnet.optimizer(config, "disc")
    beta, bce_weight = float(config.loss.beta), float(config.loss.get("bce", 0.0))
    adv_schedule = _vnet.ramp(config, config.loss.adv_weight)

    def update_generator(state: TrainState, batch, key):
        seg, disc = state.nets["seg"], state.nets["disc"]
        image, label, labelled = batch["image"], batch["label"], batch["labelled"]
        unlabelled = jnp.logical_not(labelled)
        sdm_of = functools.partial(signed_distance_map, dtype=image.dtype)
        target_sdm = jax.vmap(sdm_of)((label == 1).astype(jnp.int32))
        w_adv = adv_schedule(state.step)

        def generator_loss(params):
            out, batch_stats = _vnet.apply_train(seg_module, params, seg, image, key)
            logits, sdm = out["seg"][..., 0], out["sdm"][..., 0]
            terms = _vnet.supervised_terms(logits, label, labelled)
            sdm_mse = mse(sdm, target_sdm, weights=labelled)
            d_logits = disc_module.apply(disc.variables, out["sdm"], image, train=False)["logits"]
            # Every unlabelled item should look labelled (class 1) to the discriminator.
            adv = generator_adversarial_loss(d_logits, weights=unlabelled)
            w = w_adv.astype(adv.dtype)
            loss = terms["dice"] + beta * sdm_mse + w * adv + bce_weight * terms["bce"]
            metrics = {
                "loss": loss,
                "loss_dice": terms["dice"],
                "loss_bce": terms["bce"],
                "loss_sdm": sdm_mse,
                "loss_adv": adv,
                "adv_weight": w_adv,
                "train_dice": _vnet.hard_dice(logits, label, labelled),
            }
            return loss, (batch_stats, metrics)

        grads, (batch_stats, metrics) = jax.grad(generator_loss, has_aux=True)(seg.params)
        seg = seg.apply_gradients(grads, seg_opt, batch_stats=batch_stats)
        return state.replace(nets={**state.nets, "seg": seg}), metrics

    def update_discriminator(state: TrainState, batch, key):
        seg, disc = state.nets["seg"], state.nets["disc"]
        image = batch["image"]
        sdm = jax.lax.stop_gradient(_vnet.apply_eval(seg_module, seg, image)["sdm"])

        def discriminator_loss(params):
            logits = disc_module.apply(
                {"params": params}, sdm, image, train=True, rngs={"dropout": key}
            )["logits"]
            accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["labelled"]).astype(jnp.float32))
            return adversarial_loss(logits, batch["labelled"]), accuracy

        (d_loss, d_acc), d_grads = jax.value_and_grad(discriminator_loss, has_aux=True)(disc.params)
        disc = disc.apply_gradients(d_grads, disc_opt)
        metrics = {"loss_disc": d_loss, "disc_accuracy": d_acc}
        return state.replace(nets={**state.nets, "disc": disc}), metrics

    return update_generator, update_discriminator


def predict(config: Any, nets: dict, images: jax.Array) -> dict[str, jax.Array]:
    """``{"prob": sigmoid(seg) (B, *S, 1), "sdm": (B, *S, 1)}`` of images ``(B, *S, 1)``."""
    return _vnet.predict(config, nets["seg"], images)


METHOD = _vnet.method("sassnet", configs, create_state, make_train_step, predict)
