"""Atlas-ISTN's networks, transforms, forward pass, registration loss and state.

See :mod:`jaxseg.methods.atlas_istn` for the model (eq. 4-9) and the losses (eq. 10-14).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxseg.geometry import (
    affine_disp,
    affine_matrix,
    compose,
    integrate_svf,
    resize_field,
    warp,
)
from jaxseg.losses import mse, smoothness
from jaxseg.methods.atlas_istn.config import check_config, learning_rate
from jaxseg.nn import AtlasSTN, UNet
from jaxseg.train import NetState, TrainState, create_net_state
from jaxseg.train.config import compute_dtype

__all__ = [
    "AtlasState",
    "affine_voxel_matrix",
    "create_state",
    "forward",
    "init_stn",
    "one_hot",
    "optimizer",
    "predict",
    "registration_loss",
    "transforms",
    "warp_batch",
]


@flax.struct.dataclass
class AtlasState(TrainState):
    """:class:`jaxseg.train.TrainState` plus ``atlas = {"image": (*S, 1), "label": (*S, K)}``."""

    atlas: dict[str, jax.Array]


def _dims(config: Any) -> int:
    return len(tuple(config.data.size))


def _itn(config: Any) -> UNet:
    return UNet.itn(_dims(config), int(config.data.num_classes), dtype=compute_dtype(config))


def _stn(config: Any) -> AtlasSTN:
    return AtlasSTN(_dims(config), dtype=compute_dtype(config))


def _at_least_float32(x: jax.Array) -> jax.Array:
    """A network output for the geometry and the losses: bfloat16 promoted to float32."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _stn_channels(config: Any) -> int:
    return 2 if config.model.variant == "vml" else 2 * (int(config.data.num_classes) - 1)


def affine_voxel_matrix(matrix: jax.Array, shape: Sequence[int]) -> jax.Array:
    """A homogeneous matrix on ``[-1, 1]``-normalised coordinates (``align_corners=True``), as
    the reference STN predicts, expressed on centred voxel coordinates: ``H M H^-1`` with
    ``H = diag((n_i - 1) / 2, 1)``. Use with :func:`jaxseg.geometry.affine_disp`."""
    half = jnp.asarray([(int(n) - 1) / 2 for n in shape] + [1.0], matrix.dtype)
    return (half[:, None] * matrix) / half[None, :]


def transforms(
    config: Any, stn_out: Mapping[str, jax.Array], shape: Sequence[int], affine_on: jax.Array
) -> dict[str, jax.Array]:
    """Forward and inverse transforms of a batch of STN outputs (see the package docstring).

    Args:
      stn_out: the outputs of :class:`jaxseg.nn.AtlasSTN` for a batch, velocity ``(B, *S/2, N)``.
      shape: the full-resolution spatial shape ``S``.
      affine_on: scalar in [0, 1]; the affine parameters are multiplied by it (0: identity).

    Returns:
      ``{"fwd", "inv", "nonrigid", "nonrigid_inv"}`` displacement fields ``(B, *S, N)`` in
      voxels, and ``"matrix"`` ``(B, N+1, N+1)``, the affine in voxel units.
    """
    shape = tuple(int(s) for s in shape)
    kind = str(config.stn.transform)
    steps = int(config.stn.integration_steps)
    velocity = stn_out["velocity"] * 0.5  # full-resolution voxels -> half-resolution voxels
    if kind == "affine":
        velocity = jnp.zeros_like(velocity)
    on = jnp.asarray(affine_on, velocity.dtype) * (0.0 if kind == "svf" else 1.0)

    def one(v, t, r, s):
        u = resize_field(integrate_svf(v, steps=steps), shape)
        u_inv = resize_field(integrate_svf(-v, steps=steps), shape)
        matrix = affine_voxel_matrix(affine_matrix(t * on, r * on, s * on), shape)
        a = affine_disp(matrix, shape)
        a_inv = affine_disp(jnp.linalg.inv(matrix), shape)
        return {
            "fwd": compose(u, a),
            "inv": compose(a_inv, u_inv),
            "nonrigid": u,
            "nonrigid_inv": u_inv,
            "matrix": matrix,
        }

    return jax.vmap(one)(
        velocity, stn_out["translation"], stn_out["rotation"], stn_out["log_scale"]
    )


def warp_batch(
    images: jax.Array, disp: jax.Array, *, order: int = 1, mode: str = "border"
) -> jax.Array:
    """:func:`jaxseg.geometry.warp` over a batch of fields ``disp (B, *S, N)``: images
    ``(B, *S, C)`` one per field, or one ``(*S, C)`` shared by all. Returns ``(B, *S, C)``."""
    if images.ndim == disp.ndim - 1:
        return jax.vmap(lambda d: warp(images, d, order=order, mode=mode))(disp)
    return jax.vmap(lambda x, d: warp(x, d, order=order, mode=mode))(images, disp)


def _regulariser(nonrigid: jax.Array) -> jax.Array:
    """Smoothness of ``(B, *S, N)`` in the reference's normalised units."""
    shape = nonrigid.shape[1:-1]
    scale = jnp.asarray([2.0 / (n - 1) for n in shape], nonrigid.dtype)
    return smoothness(nonrigid * scale.reshape((1,) * (len(shape) + 1) + (-1,)))


def one_hot(config: Any, label: jax.Array) -> jax.Array:
    """Float32 one-hot ``(*L, K)`` of integer labels ``(*L)``, ``K = data.num_classes``."""
    return jax.nn.one_hot(label, int(config.data.num_classes), dtype=jnp.float32)


def _stn_input(
    config: Any, itn_out: jax.Array, image: jax.Array, atlas: Mapping[str, jax.Array]
) -> jax.Array:
    batch = image.shape[0]
    if config.model.variant == "vml":
        moving, target = image, atlas["image"]
    else:
        moving, target = itn_out[..., 1:], atlas["label"][..., 1:]
    target = jnp.broadcast_to(target[None], (batch, *target.shape))
    return jnp.concatenate([moving, target], axis=-1)


def forward(
    config: Any,
    params: Mapping[str, Any],
    image: jax.Array,
    atlas: Mapping[str, jax.Array],
    *,
    affine_on: jax.Array | float = 1.0,
    itn_out: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The Atlas-ISTN forward pass of images ``(B, *S, 1)``.

    Args:
      params: ``{"itn": ..., "stn": ...}`` Flax parameters (``"itn"`` unused with ``itn_out``).
      atlas: ``{"image": (*S, 1), "label": (*S, K)}``.
      itn_out: a precomputed ITN output ``(B, *S, K)`` (test-time refinement keeps it fixed).

    Returns:
      ``{"itn": (B, *S, K), "atlas_label": (B, *S, K)`` (the atlas labelmap warped to each
      subject), and the fields of :func:`transforms`.
    """
    shape = image.shape[1:-1]
    if itn_out is None:
        itn_out = _itn(config).apply({"params": params["itn"]}, image, train=True)["logits"]
        itn_out = _at_least_float32(itn_out)
    stn_out = _stn(config).apply(
        {"params": params["stn"]}, _stn_input(config, itn_out, image, atlas), train=True
    )
    stn_out = jax.tree.map(_at_least_float32, stn_out)
    out = transforms(config, stn_out, shape, affine_on)
    out["itn"] = itn_out
    out["atlas_label"] = warp_batch(atlas["label"], out["fwd"])
    return out


def registration_loss(
    out: Mapping[str, jax.Array],
    target: jax.Array,
    atlas_label: jax.Array,
    *,
    a2s: float | jax.Array,
    s2a: float | jax.Array,
    lam: float | jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``a2s L_a2s + s2a L_s2a + lam L_reg`` of a :func:`forward` output against ``target``
    ``(B, *S, K)`` (one-hot labels in training, the ITN output at test time), ``atlas_label``
    ``(*S, K)``; MSEs over the foreground channels. Returns ``(loss, {"a2s", "s2a", "reg"})``,
    scalars."""
    terms = {
        "a2s": mse(out["atlas_label"][..., 1:], target[..., 1:]),
        "reg": _regulariser(out["nonrigid"]),
    }
    # L_s2a needs the target warped to atlas space; skip the warp when its weight is a literal 0.
    if isinstance(s2a, float | int) and s2a == 0:
        terms["s2a"] = jnp.zeros(())
    else:
        warped = warp_batch(target, out["inv"])
        terms["s2a"] = mse(
            warped[..., 1:], jnp.broadcast_to(atlas_label[..., 1:], warped[..., 1:].shape)
        )
    loss = a2s * terms["a2s"] + s2a * terms["s2a"] + lam * terms["reg"]
    return loss, terms


def optimizer(config: Any) -> optax.GradientTransformation:
    """Adam with the per-epoch decay of :func:`~jaxseg.methods.atlas_istn.config.learning_rate`
    (the same settings for both networks: the reference's single Adam over both)."""
    return optax.adam(learning_rate(config))


def init_stn(config: Any, key: jax.Array, opt: optax.GradientTransformation) -> NetState:
    """A freshly initialised STN (and ``opt``'s state) for images of ``data.size``."""
    size = tuple(config.data.size)
    example = jnp.zeros((1, *size, _stn_channels(config)), jnp.float32)
    return create_net_state(_stn(config), opt, key, example, train=False)


def create_state(config: Any, key: jax.Array) -> AtlasState:
    """``AtlasState`` with ``nets = {"itn", "stn"}`` (one Adam each, the same settings), a zero
    atlas (:func:`~jaxseg.methods.atlas_istn.atlas.prepare` sets the initial one) and the RNG
    seeded from ``key``."""
    check_config(config)
    size = tuple(config.data.size)
    k = int(config.data.num_classes)
    itn_key, stn_key, rng = jax.random.split(key, 3)
    opt = optimizer(config)
    itn = create_net_state(
        _itn(config), opt, itn_key, jnp.zeros((1, *size, 1), jnp.float32), train=False
    )
    atlas = {
        "image": jnp.zeros((*size, 1), jnp.float32),
        "label": jnp.zeros((*size, k), jnp.float32),
    }
    return AtlasState(
        step=jnp.zeros((), jnp.int32),
        rng=rng,
        nets={"itn": itn, "stn": init_stn(config, stn_key, opt)},
        atlas=atlas,
    )


def predict(config: Any, nets: Mapping[str, NetState], images: jax.Array) -> dict[str, jax.Array]:
    """``{"prob": (B, *S, K)}``: the ITN output of images ``(B, *S, 1)`` (labels by argmax)."""
    out = _itn(config).apply({"params": nets["itn"].params}, images, train=False)["logits"]
    return {"prob": _at_least_float32(out)}
