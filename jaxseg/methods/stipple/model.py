"""STIPPLE's network, state, training step and prediction.

See :mod:`jaxseg.methods.stipple` for the method. The batches carry, channels last, the image
(channel :data:`IMAGE`), the placed prior (:data:`PRIOR`) and, for pseudo-labelled items, the
pseudo-label and its selection mask (:data:`TARGET`, :data:`WEIGHT`); only the image enters
the network, the prior enters the final activation.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxseg.nn import UNet
from jaxseg.train import TrainState, create_net_state, create_train_state
from jaxseg.train.config import compute_dtype
from jaxseg.train.optim import make_optimizer

__all__ = [
    "IMAGE",
    "PRIOR",
    "TARGET",
    "WEIGHT",
    "StippleState",
    "create_state",
    "make_train_step",
    "network",
    "optimizer",
    "predict",
    "put_like",
]

IMAGE, PRIOR, TARGET, WEIGHT = 0, 1, 2, 3
"""Channels of the training images: image, placed prior, pseudo-label, pseudo-label mask."""


@flax.struct.dataclass
class StippleState(TrainState):
    """:class:`jaxseg.train.TrainState` plus the spatial ``prior`` ``(Wp, Hp, B)`` (built from
    the labelled cases when training starts, checkpointed with the network)."""

    prior: jax.Array


def network(config: Any) -> UNet:
    """The U-Net of Table 5 (``model.features``; two classes, background and organ), 2D on axial
    slices or 3D (``model.spatial_dims``); it computes in
    :func:`~jaxseg.train.config.compute_dtype`."""
    return UNet.stipple(
        int(config.model.spatial_dims),
        2,
        features=tuple(config.model.features),
        dtype=compute_dtype(config),
    )


def optimizer(config: Any) -> optax.GradientTransformation:
    """``optim.seg`` over the whole run (Adam 1e-4 decaying in inverse time to 1e-5)."""
    return make_optimizer(config.optim.seg, steps=int(config.train.steps))


def _prior_shape(config: Any) -> tuple[int, int, int]:
    size = tuple(int(n) for n in config.prior.size)
    if len(size) != 3 or min(size) < 1 or size[2] < int(config.prior.bins):
        raise ValueError(
            f"prior.size must be 3 positive ints (Wp, Hp, Dz) with Dz >= prior.bins = "
            f"{config.prior.bins}, got {size}"
        )
    return size[0], size[1], int(config.prior.bins)


def _network_input(config: Any, images: jax.Array) -> jax.Array:
    """The image channel of ``(B, *P, C)`` patches as the network's input: ``(B, *P, 1)`` in
    3D, ``(B, X, Y, 1)`` for the 2D network (patches one slice thick)."""
    x = images[..., IMAGE : IMAGE + 1]
    if int(config.model.spatial_dims) == 3:
        return x
    if x.shape[3] != 1:
        raise ValueError(
            f"the 2D network takes axial slices: patches (B, X, Y, 1, C), got {images.shape}"
        )
    return x[:, :, :, 0]


def _example(config: Any) -> jax.Array:
    patch = tuple(config.data.patch)
    return _network_input(config, jnp.zeros((1, *patch, 1), jnp.float32))


def create_state(config: Any, key: jax.Array) -> StippleState:
    """``StippleState`` with ``nets = {"seg": U-Net}`` and a zero prior of ``prior.size``'s
    window and ``prior.bins`` bins (filled by :func:`jaxseg.methods.stipple.prepare`)."""
    init_key, rng = jax.random.split(key)
    seg = create_net_state(
        network(config), optimizer(config), init_key, _example(config), train=False
    )
    base = create_train_state({"seg": seg}, rng)
    prior = jnp.zeros(_prior_shape(config), jnp.float32)
    return StippleState(step=base.step, rng=base.rng, nets=base.nets, prior=prior)


def _fused_logits(config: Any, out: jax.Array, images: jax.Array) -> jax.Array:
    """Network logits (``(B, *P, 2)``, a slice axis added in 2D, in at least float32: the log
    prior of p = 0.999 is not representable in bfloat16) plus the log prior
    ``(log(1 - p), log p)`` of the prior channel, so that their softmax is the prior-driven
    softmax of eq. 2 (:func:`jaxseg.priors.prior_driven_softmax`, log clamped at the smallest
    normal number as there); the logits alone with ``prior.use`` false or no prior channel."""
    logits = out if int(config.model.spatial_dims) == 3 else out[:, :, :, None]
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))  # bfloat16: float32
    if not bool(config.prior.use) or images.shape[-1] <= PRIOR:
        return logits
    p = images[..., PRIOR].astype(logits.dtype)
    tiny = jnp.finfo(logits.dtype).tiny
    return logits + jnp.log(jnp.maximum(jnp.stack([1.0 - p, p], axis=-1), tiny))


def predict(config: Any, nets: dict, images: jax.Array) -> dict[str, jax.Array]:
    """``{"prob": (B, *P, 1)}``: the organ probability of the prior-driven softmax (eq. 2) of
    patches ``(B, *P, C)`` whose channel :data:`PRIOR` holds the placed prior (a uniform 0.5
    gives the plain softmax); the network in evaluation mode."""
    net = nets["seg"]
    out = network(config).apply(net.variables, _network_input(config, images), train=False)
    prob = jax.nn.softmax(_fused_logits(config, out["logits"], images), axis=-1)
    return {"prob": prob[..., 1:]}


def make_train_step(config: Any):
    """The pure step ``(state, batch, key) -> (state, metrics)``: one Adam step on the
    cross-entropy plus the soft Dice of the prior-driven softmax, over the voxels with a target.

    Targets: the label of the labelled items (every voxel); for the other items the
    pseudo-label (channel :data:`TARGET`) on the voxels it selects (channel :data:`WEIGHT`;
    both thresholded at 0.5 after the linear interpolation of the augmentation), none before
    the first pseudo-labelling round.
    """
    module, opt = network(config), optimizer(config)
    dice_weight = float(config.loss.dice)

    def step(state: StippleState, batch, key):
        net = state.nets["seg"]
        images, labelled = batch["image"], batch["labelled"]
        shape = (-1,) + (1,) * (images.ndim - 2)
        is_labelled = labelled.reshape(shape)
        target = jnp.where(is_labelled, batch["label"] == 1, images[..., TARGET] > 0.5)
        weight = jnp.where(is_labelled, True, images[..., WEIGHT] > 0.5).astype(images.dtype)
        batch_mask = None
        if int(config.data.unlabelled_batch) > 0:
            # Items without any target (unlabelled slices before the first round) stay out of
            # the batch-norm statistics: until then the network learns from the labelled
            # items alone, Algorithm 2's first training (see the package docstring).
            has_target = jnp.any(weight > 0, axis=tuple(range(1, weight.ndim)))
            batch_mask = has_target | ~jnp.any(has_target)

        def loss_fn(params):
            variables = {"params": params, "batch_stats": net.batch_stats}
            out, updates = module.apply(
                variables,
                _network_input(config, images),
                train=True,
                batch_mask=batch_mask,
                rngs={"dropout": key},
                mutable=["batch_stats"],
            )
            logits = _fused_logits(config, out["logits"], images)
            log_probs = jax.nn.log_softmax(logits, axis=-1)
            count = jnp.maximum(jnp.sum(weight), 1.0)
            picked = jnp.where(target, log_probs[..., 1], log_probs[..., 0])
            ce = -jnp.sum(weight * picked) / count
            p, t = jnp.exp(log_probs[..., 1]) * weight, target * weight
            dice = 1.0 - (2.0 * jnp.sum(p * t) + 1e-5) / (jnp.sum(p) + jnp.sum(t) + 1e-5)
            loss = ce + dice_weight * dice
            hard = (log_probs[..., 1] > log_probs[..., 0]) * weight
            metrics = {
                "loss": loss,
                "loss_ce": ce,
                "loss_dice": dice,
                "train_dice": 2 * jnp.sum(hard * t) / jnp.maximum(jnp.sum(hard) + jnp.sum(t), 1.0),
                "target_fraction": jnp.mean(weight),
            }
            return loss, (updates["batch_stats"], metrics)

        grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(net.params)
        net = net.apply_gradients(grads, opt, batch_stats=batch_stats)
        return state.replace(nets={"seg": net}), metrics

    return step


def put_like(value: Any, like: jax.Array) -> jax.Array:
    """``value`` as an array with the dtype and sharding of ``like`` (e.g. replicated over the
    devices of every process, built from this process's identical copy)."""
    value = jnp.asarray(value, like.dtype)
    return jax.make_array_from_callback(like.shape, like.sharding, lambda index: value[index])
