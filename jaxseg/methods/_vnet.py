"""Pieces shared by the V-Net methods of the LA papers (supervised, SASSNet, DTML).

Which items of a batch are supervised is read from ``batch["labelled"]`` (see
:mod:`jaxseg.data.pipeline`), never from their position: supervised terms are the public losses
of :mod:`jaxseg.losses` with per-item ``weights``, so that the same step runs on any batch layout
and on a batch sharded over several devices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxseg import losses
from jaxseg.nn import VNet
from jaxseg.train import NetState, create_net_state
from jaxseg.train.config import compute_dtype
from jaxseg.train.method import Method
from jaxseg.train.optim import make_optimizer, schedule_steps


def vnet(config: Any) -> VNet:
    """The V-Net of ``config.model``: one output channel (sigmoid segmentation, tanh SDM).

    It computes in :func:`~jaxseg.train.config.compute_dtype`: the dtype of its parameters and
    input (float32 for the state of :func:`init_vnet`, float64 for a state and batch cast to
    float64), or bfloat16 with ``train.precision = "bfloat16"``."""
    return VNet(
        n_classes=1,
        n_filters=config.model.n_filters,
        normalization=config.model.normalization,
        has_dropout=config.model.has_dropout,
        dtype=compute_dtype(config),
    )


def optimizer(config: Any, name: str) -> optax.GradientTransformation:
    """The optimizer of section ``config.optim[name]`` for a run of ``config.train.steps``."""
    return make_optimizer(config.optim[name], steps=int(config.train.steps))


def ramp(config: Any, weight: float) -> Any:
    """``schedule(step) = weight * sigmoid_rampup(step // d, loss.rampup)`` with the ramp unit
    ``d`` = ``loss.rampup_divisor`` in ``loss.rampup_divisor_unit`` (iterations, or a fraction
    of the run: the papers' 150 of 6000 iterations) converted for this run's length."""
    divisor = schedule_steps(
        config.loss.rampup_divisor,
        config.loss.get("rampup_divisor_unit", "iterations"),
        steps=int(config.train.steps),
    )
    return losses.consistency_weight(
        float(weight), rampup_length=float(config.loss.rampup), step_divisor=max(divisor, 1)
    )


def example_image(config: Any) -> jax.Array:
    """A zero batch of one patch, ``(1, *patch, 1)``, to initialise networks."""
    return jnp.zeros((1, *config.data.patch, 1), jnp.float32)


def init_vnet(config: Any, opt: optax.GradientTransformation, key: jax.Array) -> NetState:
    """A fresh V-Net state (parameters initialised as PyTorch's defaults) with optimizer ``opt``."""
    return create_net_state(vnet(config), opt, key, example_image(config), train=False)


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


def supervised_terms(
    seg_logits: jax.Array, label: jax.Array, labelled: jax.Array
) -> dict[str, jax.Array]:
    """Soft Dice (over all labelled voxels at once, as the reference) and binary cross-entropy
    of the segmentation logits ``(B, *S)`` against ``label == 1``, on the items with
    ``labelled`` ``(B,)`` true, in the dtype of the logits."""
    target = label == 1
    dice = losses.dice_loss(jax.nn.sigmoid(seg_logits), target, weights=labelled)
    bce = losses.binary_cross_entropy_with_logits(seg_logits, target, weights=labelled)
    return {"dice": dice, "bce": bce}


def hard_dice(seg_logits: jax.Array, label: jax.Array, labelled: jax.Array) -> jax.Array:
    """Dice of the thresholded prediction on the labelled items (a training metric)."""
    w = labelled.astype(seg_logits.dtype).reshape((-1,) + (1,) * (label.ndim - 1))
    pred = (seg_logits > 0).astype(seg_logits.dtype) * w
    ref = (label == 1).astype(seg_logits.dtype) * w
    return 2 * jnp.sum(pred * ref) / jnp.maximum(jnp.sum(pred) + jnp.sum(ref), 1.0)


def predict(config: Any, net: NetState, images: jax.Array) -> dict[str, jax.Array]:
    """``{"prob": sigmoid(seg), "sdm": tanh SDM}``, each ``(B, *S, 1)`` in at least float32, of
    a V-Net in evaluation mode on images ``(B, *S, 1)``."""
    out = apply_eval(vnet(config), net, images)
    seg, sdm = (x.astype(jnp.promote_types(x.dtype, jnp.float32)) for x in (out["seg"], out["sdm"]))
    return {"prob": jax.nn.sigmoid(seg), "sdm": sdm}


def import_weights(
    config: Any, state: Any, state_dict: Mapping[str, Any], source: str
) -> dict[str, NetState]:
    """``state.nets`` with ``"seg"`` replaced by the reference PyTorch V-Net of ``state_dict``
    (a SASSNet/DTML ``best_model.pth``; :func:`jaxseg.interop.torch.import_state_dict`).

    Raises:
      ValueError: naming ``source``, when its network is not the config's V-Net.
    """
    from jaxseg.interop.torch import import_state_dict

    try:
        variables = import_state_dict("vnet", state_dict)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    seg = state.nets["seg"]
    expected = jax.tree.map(jnp.shape, seg.params)
    if jax.tree.map(jnp.shape, variables["params"]) != expected:
        raise ValueError(
            f"{source}: the reference V-Net's parameters do not match the network of config "
            f"{config.method!r} (model.n_filters={config.model.n_filters}; the reference uses 16)"
        )
    seg = seg.replace(params=variables["params"], batch_stats=variables.get("batch_stats", {}))
    return {**state.nets, "seg": seg}


def method(name: str, configs: Any, create_state, make_train_step, predict) -> Method:
    """The engine's record of a V-Net method of the LA papers: its shipped config module
    ``configs`` (``SETTINGS``, ``get_config``), its functions, and :func:`import_weights` for
    the reference PyTorch checkpoints."""
    return Method(
        name=name,
        settings=configs.SETTINGS,
        default_config=configs.get_config,
        create_state=create_state,
        make_train_step=make_train_step,
        predict=predict,
        import_weights=import_weights,
    )
