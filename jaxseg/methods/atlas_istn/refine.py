"""Test-time refinement of the STN (eq. 17-21) and subject-to-subject maps (eq. 22-23)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxseg.geometry import compose
from jaxseg.methods.atlas_istn.model import forward, registration_loss

__all__ = ["make_refine", "refine_lam", "subject_to_subject"]


def refine_lam(config: Any) -> float:
    """``lambda*`` of the refinement: ``refine.lam``, or the training ``loss.lam`` when that is
    negative (the default)."""
    lam = float(config.refine.lam)
    return lam if lam >= 0 else float(config.loss.lam)


def make_refine(config: Any, *, lam: float | None = None) -> Callable:
    """``refine(stn_params, images, itn_out, atlas) -> (params, losses)``, jitted.

    For each case of ``images (B, *S, 1)`` with ITN output ``itn_out (B, *S, K)``: ``refine.steps``
    Adam steps (``refine.lr``) on its own copy of ``stn_params`` of
    ``refine.a2s L*_a2s + refine.s2a L*_s2a + lam L_reg`` (``lam`` default :func:`refine_lam`).
    Returns the per-case parameters (leading axis ``B``) and the loss before each step and after
    the last, ``(B, steps + 1)``.
    """
    steps = int(config.refine.steps)
    if lam is None:
        lam = refine_lam(config)
    a2s, s2a = float(config.refine.a2s), float(config.refine.s2a)
    optimizer = optax.adam(float(config.refine.lr))

    def loss_fn(stn_params, image, itn_out, atlas):
        out = forward(config, {"stn": stn_params}, image[None], atlas, itn_out=itn_out[None])
        loss, _ = registration_loss(out, itn_out[None], atlas["label"], a2s=a2s, s2a=s2a, lam=lam)
        return loss

    def one(stn_params, image, itn_out, atlas):
        def body(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, image, itn_out, atlas)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(
            body, (stn_params, optimizer.init(stn_params)), None, length=steps
        )
        final = loss_fn(params, image, itn_out, atlas)
        return params, jnp.concatenate([losses, final[None]])

    def refine(stn_params, images, itn_out, atlas):
        # Cases one after the other: vmapping per-case weights turns every convolution into a
        # grouped one, which is slower on CPU than a loop.
        return jax.lax.map(lambda xy: one(stn_params, *xy, atlas), (images, itn_out))

    return jax.jit(refine)


def subject_to_subject(inv_i: jax.Array, fwd_j: jax.Array) -> jax.Array:
    """Eq. 22-23: the displacement mapping subject ``i`` to subject ``j`` through the atlas,
    ``warp(x_i, subject_to_subject(inv_i, fwd_j)) ≈ warp(warp(x_i, inv_i), fwd_j)`` (``x_i`` in
    ``j``'s space). Fields ``(*S, N)`` in voxels."""
    return compose(inv_i, fwd_j)
