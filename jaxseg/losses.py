"""Losses and weight schedules of SASSNet, DTML, STIPPLE and Atlas-ISTN.

Every loss is a pure function of arrays, returns a scalar and is computed in at least float32
(bfloat16/float16 inputs are promoted before summing). Shapes are checked when the function is
traced; a mismatch raises ``ValueError`` naming the expected shape. Arrays are channels-last and
the reductions are those of the reference PyTorch code, stated in each docstring: most losses
are a mean (or a sum, for Dice) over *every* element, batch included, not a mean of per-sample
losses.

Schedules (``sigmoid_rampup``, ``linear_rampup``, ``cosine_rampdown``, ``gaussian_warmup`` and the
factory ``consistency_weight``) are pure functions of the step: they accept a traced step inside
``jax.jit`` and return a float32 scalar (float64 when ``jax_enable_x64`` is on, the precision
of the reference's Python floats), so a resumed run recomputes the same weight from the step
count alone.

How the reference training scripts combine these terms (``y``: labels of the ``lb`` labelled
volumes, first in the batch; ``t``: iterations completed before the current one):

* SASSNet (``code/train_gan_sdfloss.py``): the segmenter minimises
  ``dice_loss(sigmoid(seg)[:lb], y) + 0.3 * mse(sdm[:lb], sdm(y))
  + w(t) * generator_adversarial_loss(D(sdm[lb:], image[lb:]))`` with
  ``w = consistency_weight(0.01, rampup_length=40)``; the binary cross-entropy of ``seg`` is
  logged but not part of the loss. Then, with the segmenter's outputs recomputed in eval mode and
  without gradient, the discriminator minimises ``adversarial_loss(D(sdm, image), labelled)``
  over the whole batch, ``labelled = [1] * lb + [0] * (B - lb)``.
* DTML (``code/train_la_dtml.py``): with ``c = dual_task_consistency(sdm, seg)`` over the whole
  batch and ``w = consistency_weight(1.0, rampup_length=40)``, the segmentation network's loss is
  ``0.5 * (binary_cross_entropy_with_logits(seg[:lb], y) + dice_loss(sigmoid(seg)[:lb], y))
  + w * c`` and the SDM network's is ``dice_loss(sigmoid(-1500 sdm)[:lb], y) + w * c``. The L1
  regression of the SDM on its target (``mae``) is computed there but not used in either loss.
  See ``dual_task_consistency`` for how the gradients of ``c`` reach both networks.
* Atlas-ISTN (``atlas-istn-letter-b.py``): every image and label term is ``mse`` over all
  elements, and the STN regulariser is ``smoothness``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxseg.shape import sdm_to_mask

__all__ = [
    "LABELLED",
    "UNLABELLED",
    "adversarial_loss",
    "binary_cross_entropy_with_logits",
    "consistency_weight",
    "cosine_rampdown",
    "cross_entropy",
    "dice_loss",
    "dual_task_consistency",
    "gaussian_warmup",
    "generator_adversarial_loss",
    "linear_rampup",
    "mae",
    "mse",
    "multiclass_dice_loss",
    "sigmoid_rampup",
    "smoothness",
]

LABELLED = 1
"""Discriminator class of a prediction on a labelled volume (SASSNet's ``Dtarget`` 1)."""
UNLABELLED = 0
"""Discriminator class of a prediction on an unlabelled volume (SASSNet's ``Dtarget`` 0)."""


# --------------------------------------------------------------------------------------------
# helpers


def _as_float(x: jax.Array, name: str, fn: str) -> jax.Array:
    """``x`` as a floating array of at least float32 precision."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{fn}: {name} must be a floating-point array, got dtype {x.dtype}")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _same_shape(a: jax.Array, b: jax.Array, names: tuple[str, str], fn: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{fn}: {names[1]} must have the shape of {names[0]}, {tuple(a.shape)}, "
            f"got {tuple(b.shape)}"
        )


def _item_weights(weights, like: jax.Array, fn: str) -> jax.Array:
    """Per-item weights ``(B,)`` as a float array shaped ``(B, 1, ..., 1)`` to broadcast with
    ``like`` ``(B, ...)``."""
    w = _as_float(jnp.asarray(weights, jnp.float32), "weights", fn)
    if like.ndim < 1 or w.shape != like.shape[:1]:
        raise ValueError(
            f"{fn}: weights must have shape ({like.shape[0] if like.ndim else '?'},), one per "
            f"item of the leading axis of {tuple(like.shape)}, got {tuple(w.shape)}"
        )
    return w.reshape(w.shape + (1,) * (like.ndim - 1)).astype(like.dtype)


def _mean(values: jax.Array, weights, fn: str) -> jax.Array:
    """``mean(values)``, or with per-item ``weights`` the weighted mean
    ``sum(w_b v_b...) / (sum(w_b) * items)``: the mean over the items of non-zero weight when the
    weights are 0/1; 0 when every weight is 0."""
    if weights is None:
        return jnp.mean(values)
    w = _item_weights(weights, values, fn)
    total = jnp.sum(w) * (values.size // max(values.shape[0], 1))
    return jnp.where(total > 0, jnp.sum(values * w) / jnp.where(total > 0, total, 1.0), 0.0)


# --------------------------------------------------------------------------------------------
# segmentation losses


@functools.partial(jax.jit, static_argnames="squared")
def dice_loss(
    probs: jax.Array,
    target: jax.Array,
    *,
    smooth: float = 1e-5,
    squared: bool = True,
    weights: jax.Array | None = None,
) -> jax.Array:
    """Soft Dice loss of the LA papers (V-Net style), over the whole batch at once.

    With sums over every element of the arrays (batch and voxels together, as the reference
    ``losses.dice_loss`` of SASSNet/DTC/DTML does, not a mean of per-sample losses):

    ``1 - (2 sum(p t) + smooth) / (sum(p**2) + sum(t**2) + smooth)``

    The reference squares both terms of the denominator (for a binary target ``sum(t**2) =
    sum(t)``). ``squared=False`` gives ``sum(p) + sum(t)``, the reference's ``dice_loss1``.

    A perfect binary prediction gives exactly 0; predictions disjoint from the target give
    ``1 - smooth / (sum(p**2) + sum(t**2) + smooth)``, about 1; both empty give 0.

    Args:
      probs: foreground probabilities, any shape, e.g. ``(B, *S)`` or ``(B, *S, 1)``.
      target: the binary target, same shape as ``probs`` (bool, integer or float).
      smooth: added to the numerator and the denominator.
      squared: square the denominator's terms (the reference's ``dice_loss``).
      weights: optional per-item weights ``(B,)`` multiplying ``probs`` and ``target`` item by
        item: with 0/1 weights, the loss of the items of weight 1 alone (the labelled items of
        a mixed batch).

    Returns:
      Scalar in ``[0, 1]`` for ``probs`` and ``target`` in ``[0, 1]``.
    """
    p = _as_float(probs, "probs", "dice_loss")
    t = jnp.asarray(target)
    _same_shape(p, t, ("probs", "target"), "dice_loss")
    t = t.astype(p.dtype)
    if weights is not None:
        w = _item_weights(weights, p, "dice_loss")
        p, t = p * w, t * w
    intersect = jnp.sum(p * t)
    denom = jnp.sum(p * p) + jnp.sum(t * t) if squared else jnp.sum(p) + jnp.sum(t)
    return 1.0 - (2.0 * intersect + smooth) / (denom + smooth)


@functools.partial(jax.jit, static_argnames="squared")
def multiclass_dice_loss(
    probs: jax.Array, target: jax.Array, *, smooth: float = 1e-5, squared: bool = False
) -> jax.Array:
    """Mean over classes of the whole-batch Dice loss of each class (background included).

    ``mean_c [1 - (2 sum(p_c t_c) + smooth) / (sum(p_c) + sum(t_c) + smooth)]``, the sums over
    the batch and all voxels. This is the reference's ``softmax_dice_loss`` applied to
    probabilities and a one-hot target; like it, the default denominator is not squared
    (``squared=True`` squares it as ``dice_loss`` does). The binary LA methods use ``dice_loss``
    on one sigmoid channel instead (DTML's ``L_seg = 0.5 (BCE + Dice)`` included).

    Args:
      probs: ``(..., C)`` class probabilities (e.g. a softmax), channels last.
      target: ``(..., C)`` one-hot target.
      smooth: added to every class's numerator and denominator.
      squared: square the denominator's terms.

    Returns:
      Scalar.
    """
    p = _as_float(probs, "probs", "multiclass_dice_loss")
    t = jnp.asarray(target)
    _same_shape(p, t, ("probs", "target (one-hot)"), "multiclass_dice_loss")
    if p.ndim < 2:
        raise ValueError(
            f"multiclass_dice_loss: probs must have shape (..., C) with a class axis last, "
            f"got {tuple(p.shape)}"
        )
    t = t.astype(p.dtype)
    axes = tuple(range(p.ndim - 1))
    intersect = jnp.sum(p * t, axis=axes)
    if squared:
        denom = jnp.sum(p * p, axis=axes) + jnp.sum(t * t, axis=axes)
    else:
        denom = jnp.sum(p, axis=axes) + jnp.sum(t, axis=axes)
    return jnp.mean(1.0 - (2.0 * intersect + smooth) / (denom + smooth))


@jax.jit
def cross_entropy(
    logits: jax.Array, labels: jax.Array, *, weights: jax.Array | None = None
) -> jax.Array:
    """Softmax cross-entropy with integer labels, mean over all voxels and the batch.

    ``mean_v [logsumexp_c logits[v, c] - logits[v, labels[v]]]``, which is
    ``torch.nn.functional.cross_entropy`` with its default ``reduction="mean"`` (channels last
    here). Labels outside ``[0, C)`` give an undefined result.

    Args:
      logits: ``(..., C)``, e.g. ``(B, *S, C)`` or a discriminator's ``(B, 2)``.
      labels: integer ``(...)``, the shape of ``logits`` without its last axis.
      weights: optional per-item weights ``(B,)`` over the leading axis: the weighted mean (the
        mean over the items of weight 1 for 0/1 weights; 0 when all are 0).

    Returns:
      Scalar.
    """
    x = _as_float(logits, "logits", "cross_entropy")
    labels = jnp.asarray(labels)
    if x.ndim < 1 or labels.shape != x.shape[:-1]:
        raise ValueError(
            f"cross_entropy: labels must have shape {tuple(x.shape[:-1])} (logits {tuple(x.shape)}"
            f" without the class axis), got {tuple(labels.shape)}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    log_probs = jax.nn.log_softmax(x, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)
    return _mean(-picked[..., 0], weights, "cross_entropy")


@jax.jit
def binary_cross_entropy_with_logits(
    logits: jax.Array, targets: jax.Array, *, weights: jax.Array | None = None
) -> jax.Array:
    """Sigmoid cross-entropy, mean over every element (``torch.nn.BCEWithLogitsLoss()``).

    ``mean[max(x, 0) - x t + log(1 + exp(-|x|))]``, which equals
    ``mean[-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))]`` without overflow for large ``|x|``.

    Args:
      logits: any shape, e.g. ``(B, *S)`` or ``(B, *S, 1)``.
      targets: same shape, in ``[0, 1]`` (bool, integer or float).
      weights: optional per-item weights ``(B,)``, as :func:`cross_entropy`.

    Returns:
      Scalar.
    """
    fn = "binary_cross_entropy_with_logits"
    x = _as_float(logits, "logits", fn)
    t = jnp.asarray(targets)
    _same_shape(x, t, ("logits", "targets"), fn)
    t = t.astype(x.dtype)
    return _mean(jnp.maximum(x, 0.0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x))), weights, fn)


@jax.jit
def mse(a: jax.Array, b: jax.Array, *, weights: jax.Array | None = None) -> jax.Array:
    """Mean squared error over every element, ``mean((a - b)**2)`` (``torch.nn.MSELoss()``).

    Used for SASSNet's SDM regression (``0.3 * mse``) and all of Atlas-ISTN's image and label
    terms. Gradients reach both arguments; stop one with ``jax.lax.stop_gradient``.

    Args:
      a: any shape.
      b: same shape as ``a``.
      weights: optional per-item weights ``(B,)``, as :func:`cross_entropy`.

    Returns:
      Scalar.
    """
    a = _as_float(a, "a", "mse")
    b = jnp.asarray(b)
    _same_shape(a, b, ("a", "b"), "mse")
    return _mean(jnp.square(a - b.astype(a.dtype)), weights, "mse")


@jax.jit
def mae(a: jax.Array, b: jax.Array, *, weights: jax.Array | None = None) -> jax.Array:
    """Mean absolute error over every element, ``mean(|a - b|)``.

    DTML's L1 regression of the SDM (the reference's ``norm(a - b, 1) / numel(a)``).

    Args:
      a: any shape.
      b: same shape as ``a``.
      weights: optional per-item weights ``(B,)``, as :func:`cross_entropy`.

    Returns:
      Scalar.
    """
    a = _as_float(a, "a", "mae")
    b = jnp.asarray(b)
    _same_shape(a, b, ("a", "b"), "mae")
    return _mean(jnp.abs(a - b.astype(a.dtype)), weights, "mae")


# --------------------------------------------------------------------------------------------
# SASSNet: adversarial terms


@jax.jit
def adversarial_loss(logits: jax.Array, labelled: jax.Array) -> jax.Array:
    """The discriminator's loss: 2-class cross-entropy, mean over the batch.

    Class ``LABELLED = 1`` means "this SDM was predicted for a labelled volume" and
    ``UNLABELLED = 0`` "for an unlabelled one", as SASSNet's ``Dtarget = [1, 1, 0, 0]`` for a
    batch of two labelled then two unlabelled volumes. The discriminator minimises
    ``adversarial_loss(D(sdm, image), labelled)`` over the whole batch, with the segmenter's
    outputs held fixed (``jax.lax.stop_gradient``).

    Args:
      logits: ``(B, 2)`` discriminator logits.
      labelled: ``(B,)`` bool or integer, true/1 where the sample is labelled.

    Returns:
      Scalar, ``mean_b cross_entropy(logits[b], labelled[b])``.
    """
    x = _as_float(logits, "logits", "adversarial_loss")
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"adversarial_loss: logits must have shape (B, 2), got {tuple(x.shape)}")
    labelled = jnp.asarray(labelled)
    if labelled.shape != x.shape[:1]:
        raise ValueError(
            f"adversarial_loss: labelled must have shape ({x.shape[0]},), one flag per sample, "
            f"got {tuple(labelled.shape)}"
        )
    return cross_entropy(x, labelled.astype(jnp.int32))


@jax.jit
def generator_adversarial_loss(logits: jax.Array, *, weights: jax.Array | None = None) -> jax.Array:
    """The segmenter's adversarial term: make predictions on unlabelled volumes look labelled.

    ``adversarial_loss(logits, LABELLED everywhere)``, i.e. ``mean_b -log softmax(logits[b])[1]``,
    where ``logits`` are the discriminator's outputs on the unlabelled part of the batch (SASSNet's
    ``cross_entropy(D(sdm[lb:], image[lb:]), Dtarget[:lb])``, whose targets are all 1). Gradients
    flow into the segmenter through ``logits``; the discriminator's parameters are not updated by
    this term.

    Args:
      logits: ``(B_u, 2)`` discriminator logits of the unlabelled samples.
      weights: optional per-item weights ``(B_u,)``, as :func:`cross_entropy` (e.g. the
        unlabelled items of a mixed batch, whose logits are all given).

    Returns:
      Scalar.
    """
    x = _as_float(logits, "logits", "generator_adversarial_loss")
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(
            f"generator_adversarial_loss: logits must have shape (B, 2), got {tuple(x.shape)}"
        )
    return cross_entropy(x, jnp.full(x.shape[:1], LABELLED, jnp.int32), weights=weights)


# --------------------------------------------------------------------------------------------
# DTML / DTC: cross-task consistency


@jax.jit
def dual_task_consistency(sdm: jax.Array, seg_logits: jax.Array, *, k: float = 1500.0) -> jax.Array:
    """Cross-task consistency between an SDM and a segmentation (DTC/DTML).

    ``mean[(sigmoid(-k sdm) - sigmoid(seg_logits))**2]`` over every element of the batch
    (labelled and unlabelled samples alike); ``sigmoid(-k sdm)`` is ``jaxseg.shape.sdm_to_mask``.

    Nothing is detached: the gradient reaches both ``sdm`` and ``seg_logits``, so in DTML both
    networks learn from this term. In the reference, the segmentation network's loss and the SDM
    network's loss each contain ``w * c`` and are back-propagated one after the other into
    gradients accumulated for both networks, so each network's update is the gradient of
    ``L_seg + L_sdm + 2 w c`` with respect to its parameters. Summing the two losses and
    differentiating with respect to both parameter sets reproduces that update.

    Args:
      sdm: ``(B, *S)`` or ``(B, *S, 1)`` predicted signed distance map (tanh output, negative
        inside).
      seg_logits: the segmentation logits, same shape as ``sdm``.
      k: steepness of the SDM-to-mask transform; 1500 in the DTML code.

    Returns:
      Scalar in ``[0, 1]``.
    """
    s = _as_float(sdm, "sdm", "dual_task_consistency")
    x = _as_float(seg_logits, "seg_logits", "dual_task_consistency")
    _same_shape(s, x, ("sdm", "seg_logits"), "dual_task_consistency")
    return jnp.mean(jnp.square(sdm_to_mask(s, k) - jax.nn.sigmoid(x)))


# --------------------------------------------------------------------------------------------
# Atlas-ISTN: smoothness of a displacement field


@functools.partial(jax.jit, static_argnames="penalty")
def smoothness(disp: jax.Array, *, penalty: str = "l2") -> jax.Array:
    """Atlas-ISTN's diffusion regulariser of a displacement field.

    For ``disp`` ``(B, *S, N)`` with ``N = len(S)`` spatial axes and forward differences
    ``D_a u = u[.., i+1, ..] - u[.., i, ..]`` along axis ``a``:

    ``(1 / N) sum_a mean(|D_a u|**2)``, or ``mean(|D_a u|)`` for ``penalty="l1"``,

    each mean over the batch, every component and the ``S_a - 1`` differences along ``a`` (the
    reference ``regularizer`` of ``nets/stn.py``: ``(mean(dx**2) + mean(dy**2) [+ mean(dz**2)]) /
    ndim``). A constant field gives 0; an affine field ``u(x) = A x + b`` gives
    ``||A||_F**2 / N**2``.

    Units: ``disp`` is in voxels here, as everywhere in jaxseg. The reference applies the same
    formula to a field in the normalised ``[-1, 1]`` coordinates of ``grid_sample``
    (``align_corners=True``); its value is this function's on the field whose component ``i`` is
    multiplied by ``2 / (S_i - 1)``.

    Args:
      disp: ``(B, *S, N)`` displacement field, every ``S_a >= 2``.
      penalty: ``"l2"`` (the reference default) or ``"l1"``.

    Returns:
      Scalar.
    """
    u = _as_float(disp, "disp", "smoothness")
    spatial = u.shape[1:-1]
    if u.ndim < 3 or u.shape[-1] != len(spatial):
        raise ValueError(
            f"smoothness: disp must have shape (B, *S, N) with N = len(S) (e.g. (B, X, Y, Z, 3) "
            f"or (B, X, Y, 2)), got {tuple(u.shape)}"
        )
    if min(spatial) < 2:
        raise ValueError(
            f"smoothness: every spatial axis of disp (B, *S, N) needs S_a >= 2 for a forward "
            f"difference, got S = {tuple(spatial)}"
        )
    if penalty not in ("l2", "l1"):
        raise ValueError(f"smoothness: penalty must be 'l2' or 'l1', got {penalty!r}")
    terms = []
    for axis in range(1, len(spatial) + 1):
        d = jnp.diff(u, axis=axis)
        terms.append(jnp.mean(jnp.square(d) if penalty == "l2" else jnp.abs(d)))
    return sum(terms) / len(spatial)


# --------------------------------------------------------------------------------------------
# ramps and weight schedules


def _schedule_dtype() -> jnp.dtype:
    """The dtype of the schedules: float32, or float64 when ``jax_enable_x64`` is on."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _length(length: float | jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(length > 0, a divisor that is length where positive and 1 elsewhere)``."""
    length = jnp.asarray(length, _schedule_dtype())
    positive = length > 0
    return positive, jnp.where(positive, length, 1.0)


@jax.jit
def sigmoid_rampup(step: int | jax.Array, length: float | jax.Array) -> jax.Array:
    """Gaussian-shaped ramp-up from about 0 to 1 (Laine & Aila 2017; UA-MT ``ramps.py``).

    ``exp(-5 (1 - clip(step, 0, length) / length)**2)``: ``exp(-5) ~ 0.0067`` at step 0, 1 from
    ``step = length`` on; 1 for every step when ``length <= 0``.

    Args:
      step: scalar (or array) step, int or float; may be traced.
      length: ramp length in the same unit as ``step``.

    Returns:
      float32 (float64 with ``jax_enable_x64``) of the shape of ``step``.
    """
    positive, safe = _length(length)
    current = jnp.clip(jnp.asarray(step, safe.dtype), 0.0, safe)
    phase = 1.0 - current / safe
    return jnp.where(positive, jnp.exp(-5.0 * phase * phase), 1.0)


@jax.jit
def linear_rampup(step: int | jax.Array, length: float | jax.Array) -> jax.Array:
    """Linear ramp-up ``clip(step / length, 0, 1)``; 1 for every step when ``length <= 0``.

    The reference returns ``step / length`` below ``length`` and 1 from there on, and asserts
    ``step >= 0``; a negative step gives 0 here.

    Args:
      step: scalar (or array) step; may be traced.
      length: ramp length in the same unit as ``step``.

    Returns:
      float32 (float64 with ``jax_enable_x64``) of the shape of ``step``.
    """
    positive, safe = _length(length)
    ramp = jnp.clip(jnp.asarray(step, safe.dtype) / safe, 0.0, 1.0)
    return jnp.where(positive, ramp, 1.0)


@jax.jit
def cosine_rampdown(step: int | jax.Array, length: float | jax.Array) -> jax.Array:
    """Cosine ramp-down ``0.5 (cos(pi clip(step, 0, length) / length) + 1)`` (Loshchilov & Hutter).

    1 at step 0, 0 from ``step = length`` on; 0 for every step when ``length <= 0``. The
    reference asserts ``0 <= step <= length``; steps outside are clipped here.

    Args:
      step: scalar (or array) step; may be traced.
      length: ramp length in the same unit as ``step``.

    Returns:
      float32 (float64 with ``jax_enable_x64``) of the shape of ``step``.
    """
    positive, safe = _length(length)
    current = jnp.clip(jnp.asarray(step, safe.dtype), 0.0, safe)
    return jnp.where(positive, 0.5 * (jnp.cos(jnp.pi * current / safe) + 1.0), 0.0)


@jax.jit
def gaussian_warmup(
    step: int | jax.Array, *, weight: float | jax.Array, length: float | jax.Array
) -> jax.Array:
    """``weight * sigmoid_rampup(step, length)``: a loss weight warmed up with a Gaussian ramp.

    SASSNet's adversarial weight and DTML's consistency weight, with ``step`` counted in the
    ramp's own unit (see ``consistency_weight`` for the reference's per-150-iteration unit).

    Args:
      step: scalar (or array) step; may be traced.
      weight: the final weight.
      length: ramp length in the unit of ``step``.

    Returns:
      float32 (float64 with ``jax_enable_x64``) of the shape of ``step``.
    """
    return jnp.asarray(weight, _schedule_dtype()) * sigmoid_rampup(step, length)


def consistency_weight(
    weight: float, *, rampup_length: float = 40.0, step_divisor: int = 150
) -> Callable[[int | jax.Array], jax.Array]:
    """Schedule of SASSNet's adversarial and DTML's consistency weight, a function of the step.

    Returns ``schedule(step) = weight * sigmoid_rampup(step // step_divisor, rampup_length)``,
    the reference's ``get_current_consistency_weight(iter_num // 150)``, where ``step`` is the
    number of optimisation steps completed before the current one (0 for the first, as the
    ``count`` of an optax state). The integer division makes the weight constant over blocks of
    ``step_divisor`` steps; it reaches ``weight`` at ``step = rampup_length * step_divisor``.

    Paper values (LA, 6000 iterations): SASSNet ``consistency_weight(0.01)`` (adversarial term),
    DTML ``consistency_weight(1.0)`` (cross-task consistency), both with ``rampup_length=40`` and
    ``step_divisor=150``, so the full weight is reached at the last iteration.

    Args:
      weight: the final weight.
      rampup_length: ramp length in units of ``step_divisor`` steps.
      step_divisor: number of steps per ramp unit, a positive integer.

    Returns:
      ``schedule(step) -> float32`` (float64 with ``jax_enable_x64``) of the shape of
      ``step``, pure and jit-able with a traced integer step.
    """
    if int(step_divisor) != step_divisor or step_divisor < 1:
        raise ValueError(
            f"consistency_weight: step_divisor must be an integer >= 1, got {step_divisor}"
        )
    step_divisor = int(step_divisor)

    def schedule(step: int | jax.Array) -> jax.Array:
        unit = jnp.floor_divide(jnp.asarray(step), step_divisor)
        return gaussian_warmup(unit, weight=weight, length=rampup_length)

    return schedule
