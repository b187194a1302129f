"""STIPPLE's prior-driven prediction (eq. 2-3) and the selection of its pseudo-labels.

Petit, Thome, Soler, IJCARS 2022. The network's logits and a spatial prior ``p`` (a per-voxel
probability, e.g. from :func:`jaxseg.priors.place_prior`) are fused by adding ``log p`` to the
logits before the softmax, which makes the output proportional to ``softmax(logits) * p``; the
sigmoid form adds the log-odds ``log p - log(1 - p)``. The self-labelling rounds then take the
most confident voxels of the fused prediction as pseudo-labels.

All functions are pure JAX and jit-able.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp

__all__ = ["prior_driven_sigmoid", "prior_driven_softmax", "select_pseudo_labels"]


def _safe_log(p: jax.Array) -> jax.Array:
    """``log(max(p, tiny))`` with ``tiny`` the smallest normal number of ``p``'s dtype
    (``log(tiny)`` is about -87.3 in float32, -708 in float64): finite for ``p = 0``."""
    return jnp.log(jnp.maximum(p, jnp.finfo(p.dtype).tiny))


def _floating_pair(x, prior, name: str) -> tuple[jax.Array, jax.Array]:
    """``x`` and ``prior`` broadcast to ``x``'s shape, in their common floating dtype."""
    x = jnp.asarray(x)
    prior = jnp.asarray(prior)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating, got {x.dtype}")
    try:
        broadcast = jnp.broadcast_shapes(x.shape, prior.shape)
    except ValueError:
        broadcast = None
    if broadcast != x.shape:
        raise ValueError(
            f"prior must broadcast to the shape of {name} {x.shape}, got shape {prior.shape}"
        )
    dtype = jnp.promote_types(x.dtype, prior.dtype)
    return x.astype(dtype), jnp.broadcast_to(prior, x.shape).astype(dtype)


def prior_driven_softmax(logits: jax.Array, prior: jax.Array) -> jax.Array:
    """Prior-driven softmax (eq. 2): ``softmax(logits + log prior)`` over the last axis.

    Equal to ``softmax(logits) * prior`` renormalised over the classes, so a prior that is the
    same for every class of a voxel (whatever its value) leaves the softmax unchanged. A class
    with prior 0 has probability 0 (up to ``exp(-87)`` in float32): ``log 0`` is taken as
    ``log(tiny)``, the smallest normal number of the dtype, so the output and the gradient with
    respect to ``logits`` stay finite, and a voxel where every class has prior 0 gets the plain
    softmax.

    Args:
      logits: floating ``(..., C)`` class logits (channels-last).
      prior: ``(..., C)`` class priors in [0, 1], or any shape that broadcasts to ``logits``
        (e.g. ``(C,)`` class frequencies). Rows need not sum to 1: for several organs, stack
        each organ's :func:`~jaxseg.priors.place_prior` volume with a background prior such as
        one minus their sum, clipped at the placing floor.

    Returns:
      ``(..., C)`` probabilities summing to 1 over the last axis, in the promoted floating
      dtype of ``logits`` and ``prior``.

    Raises:
      ValueError: ``logits`` is not floating or ``prior`` does not broadcast to its shape.
    """
    logits, prior = _floating_pair(logits, prior, "logits")
    return jax.nn.softmax(logits + _safe_log(prior), axis=-1)


def prior_driven_sigmoid(logit: jax.Array, prior: jax.Array) -> jax.Array:
    """Prior-driven sigmoid (eq. 3): ``sigmoid(logit + log p - log(1 - p))``, ``p = prior``.

    The binary form of eq. 2: the prior's log-odds shift the organ logit. ``p = 0.5`` gives the
    plain sigmoid exactly. At ``p = 0`` and ``p = 1`` the logarithms are taken of
    ``max(p, tiny)`` and ``max(1 - p, tiny)`` (``tiny`` the smallest normal number of the dtype,
    ``log tiny`` about -87.3 in float32), so the output is 0 (resp. 1) up to ``exp(-87)`` for
    moderate logits, never NaN, and the gradient with respect to ``logit`` is finite.

    Args:
      logit: floating organ logits, any shape.
      prior: organ prior ``p`` in [0, 1], of the shape of ``logit`` or broadcasting to it.

    Returns:
      Probabilities of the shape of ``logit``, in the promoted floating dtype of ``logit`` and
      ``prior``.

    Raises:
      ValueError: ``logit`` is not floating or ``prior`` does not broadcast to its shape.
    """
    logit, prior = _floating_pair(logit, prior, "logit")
    return jax.nn.sigmoid(logit + (_safe_log(prior) - _safe_log(1.0 - prior)))


@functools.partial(jax.jit, static_argnames=("k", "k_background"))
def _select(probs: jax.Array, *, k: int, k_background: int) -> tuple[jax.Array, jax.Array]:
    """:func:`select_pseudo_labels` after validation: one stable sort of the flat volume."""
    order = jnp.argsort(-probs.reshape(-1), stable=True)
    selected = jnp.concatenate([order[:k], order[probs.size - k_background :]])
    label = jnp.zeros(probs.size, jnp.int32).at[order[:k]].set(1)
    weight = jnp.zeros(probs.size, probs.dtype).at[selected].set(1)
    return label.reshape(probs.shape), weight.reshape(probs.shape)


def select_pseudo_labels(
    probs: jax.Array, k: int, *, k_background: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Pseudo-labels of one volume: its ``k`` most confident organ voxels.

    The voxels are ranked by organ probability, highest first, ties broken by flat (C-order)
    index, lowest first (a stable sort). The first ``k`` voxels of the ranking are selected as
    organ and the last ``k_background`` as background (the lowest probabilities; among equal
    ones, the highest indices), so the two sets never overlap.

    Args:
      probs: floating organ probabilities of one volume, any shape ``S`` (vmap for a batch).
      k: number of organ voxels, static, ``0 <= k``.
      k_background: number of confident background voxels, static,
        ``0 <= k_background <= probs.size - k``.

    Returns:
      ``(label, weight)``, both of shape ``S``: ``label`` int32, 1 on the ``k`` organ voxels
      and 0 elsewhere; ``weight`` of ``probs``' dtype, 1 on the ``k + k_background`` selected
      voxels and 0 elsewhere. A voxel-wise loss weighted by ``weight`` against ``label`` trains
      on the pseudo-labels only.

    Raises:
      ValueError: ``probs`` is not floating, or ``k``, ``k_background`` are negative or select
        more voxels than ``probs`` has.
    """
    probs = jnp.asarray(probs)
    if not jnp.issubdtype(probs.dtype, jnp.floating):
        raise ValueError(f"probs must be floating, got {probs.dtype}")
    k, k_background = operator.index(k), operator.index(k_background)
    if k < 0 or k_background < 0 or k + k_background > probs.size:
        raise ValueError(
            f"k={k} and k_background={k_background} must be non-negative and select at most the "
            f"{probs.size} voxels of probs {probs.shape}"
        )
    return _select(probs, k=k, k_background=k_background)
