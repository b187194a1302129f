"""Atlas-ISTN (Sinclair et al., Medical Image Analysis 2022): joint segmentation and registration
to an atlas built during training, with test-time refinement of the registration.

Model (eq. 4-9)
---------------
The image transformer network (ITN, :meth:`jaxseg.nn.UNet.itn`) maps an image ``(B, *S, 1)`` to
``K`` channels regressed onto the one-hot labels. The spatial transformer network (STN,
:class:`jaxseg.nn.AtlasSTN`) takes the foreground channels of the ITN output and of the atlas
labelmap (``2 (K - 1)`` channels; the VML variant takes the image and the atlas image instead)
and predicts

* a stationary velocity field at half resolution. Its raw output is read as a velocity in
  *full-resolution* voxels (what the reference's rescaling to ``grid_sample`` units amounts to),
  halved to the half-resolution grid, integrated there by scaling and squaring
  (``stn.integration_steps``, 6 as the reference) and upsampled with
  :func:`jaxseg.geometry.resize_field`: the non-rigid displacement ``u`` and its inverse
  ``u_inv`` (from ``-v``);
* an affine ``A = S R T`` from translation, rotation and scaling. As in the reference these act
  on coordinates normalised to ``[-1, 1]`` along each axis (``align_corners=True``: voxel ``x``
  at ``(x - c) / h`` with ``c = h = (n - 1) / 2``); :func:`affine_voxel_matrix` conjugates the
  matrix of :func:`jaxseg.geometry.affine_matrix` into voxel units. (3D rotations use jaxseg's
  Euler convention ``R_0 R_1 R_2``; the reference uses Z-X-Z. Both cover the same rotations.)

The forward transform maps atlas to subject, ``Phi(x) = phi(A x)``, the inverse maps subject to
atlas, ``Phi^-1(x) = A^-1 phi^-1(x)``; both are pull-back displacement fields
(``fwd = compose(u, a)``, ``inv = compose(a_inv, u_inv)``), so ``warp(atlas, fwd)`` is the atlas
in subject space and ``warp(subject, inv)`` the subject in atlas space, as the letter-B script.

Losses (eq. 10-14)
------------------
``L = L_s + omega (L_a2s + L_s2a + lambda L_reg)`` with, as in the released code, mean squared
errors over all voxels and channels: ``L_s`` of the ITN output to the one-hot labels;
``L_a2s`` of the warped atlas labelmap to the labels and ``L_s2a`` of the warped labels to the
atlas labelmap, both over the foreground channels; ``L_reg`` the diffusion regulariser
(:func:`jaxseg.losses.smoothness`) of the upsampled non-rigid displacement ``u`` only, in the
reference's normalised units (component ``i`` times ``2 / (S_i - 1)``) so that the papers'
``lambda`` (500 for letter B, 800 for CT) keep their meaning. ``omega`` is 1 or the fade-in of
eq. 24, ``1 / (1 + exp(-(epoch - loss.fade_epoch) / loss.fade_width))`` with 1-based epochs
(``loss.fade_epoch = -1``: constant 1). During training the registration terms use the
*reference* labels (the reference code's ``loss_seg2atl``/``loss_atl2seg``); the STN input is
the ITN output, not detached, so these terms also train the ITN.

Atlas (eq. 15-16)
-----------------
The atlas (image ``(*S, 1)`` and labelmap ``(*S, K)``, soft) lives in the training state
(:class:`AtlasState`), so it is checkpointed with the networks. It starts as the mean of the
training images and one-hot labels; after every epoch (a :class:`jaxseg.train.Hook` every
``steps_per_epoch`` steps) it becomes ``(1 - eta) atlas + eta mean_i warp(x_i, inv_i)`` (and the
same for the labels) with ``eta = atlas.rate``, the training cases warped to atlas space by the
current networks. ``atlas.fixed = True`` keeps the initial atlas (an ablation of the paper). The
atlas is also written as NIfTI and PNG to ``<workdir>/atlas/`` after every update.

Test time (eq. 17-21)
---------------------
Three outputs per case: the ITN prediction (``argmax`` of its output), the 1-pass atlas warp
(the atlas labelmap warped by the trained STN's transform) and the refined warp: ``refine.steps``
Adam iterations (learning rate ``refine.lr``) on the STN parameters only, for that one case, of
``beta L*_a2s + gamma L*_s2a + lambda* L_reg`` against the (fixed) ITN output (the reference
code: ``beta = 1``, ``gamma = 0``, 50 iterations, the training learning rate). The loop is one
compiled ``lax.scan``, vmapped over the cases of a chunk. ``refine.from_scratch`` starts from
freshly initialised STN weights instead of the trained ones (the paper's "ITN + refinement from
scratch" ablation, with ``loss.omega`` 0 in training).

Variants (``model.variant``): ``"istn"`` (the default), ``"vml"`` (STN only, on the image and
the atlas image; no ITN loss; its 1-pass warp is the prediction). ``stn.transform``:
``"full"`` (affine + SVF), ``"svf"`` or ``"affine"``. ``loss.affine_from_epoch``: the affine is
the identity before that epoch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxseg.data import synthetic
from jaxseg.data.case import Case
from jaxseg.data.nifti import decathlon_cases, load_case, save_nifti
from jaxseg.data.png2d import load_png_case, png_list_cases
from jaxseg.data.preprocess import resample_to_shape, zscore
from jaxseg.geometry import (
    affine_disp,
    affine_matrix,
    compose,
    identity_grid,
    integrate_svf,
    resize_field,
    warp,
)
from jaxseg.losses import smoothness
from jaxseg.metrics import evaluate_case, inverse_consistency
from jaxseg.nn import AtlasSTN, UNet
from jaxseg.train import Hook, NetState, TrainState, create_net_state
from jaxseg.train.evaluate import (
    draw_contours,
    json_safe,
    nanmean,
    nanstd,
    new_figure,
    save_png,
)
from jaxseg.train.logging import write_json_atomic
from jaxseg.train.optim import make_optimizer

__all__ = [
    "SETTINGS",
    "AtlasState",
    "affine_voxel_matrix",
    "create_state",
    "default_config",
    "evaluate",
    "forward",
    "load_cases",
    "make_refine",
    "make_train_step",
    "omega",
    "predict",
    "prepare",
    "registration_loss",
    "steps_per_epoch",
    "subject_to_subject",
    "transforms",
    "update_atlas",
]

SETTINGS = ("paper", "cpu", "smoke")

# Seeds of the generated letter-B / cardiac cases: training and test ranges are disjoint.
_SEEDS = {"train": 0, "test": 20_000}


# --------------------------------------------------------------------------------------------
# Config


def default_config(setting: str = "paper", *, data: str = "letter_b") -> ml_collections.ConfigDict:
    """Atlas-ISTN config for ``data`` ("letter_b": 2D, 64 x 64 at spacing 2, as the released
    config.json; "cardiac_like": the 3D multi-structure phantoms) in ``setting``:

    * ``paper``: the released settings (letter B: 1000 training cases, 300 epochs, batch 10,
      Adam 1e-3 halved every 300 epochs, fade-in at epoch 25, lambda 500, eta 0.01, 50
      refinement iterations; cardiac: 800 epochs, decay 400, fade-in 200, 64^3).
    * ``cpu``: letter B on 2 CPU cores in about 20 minutes: the 1000 training cases, 30 epochs
      (the fade-in at epoch 3, its width and the decay scaled by the same factor, atlas rate
      0.1 so that the atlas forgets its initial mean as fast per run), refinement also at
      lambda 50 and 5000; 3D: 40 phantoms at 32^3, 40 epochs of batch 2.
    * ``smoke``: a few small cases and steps, for tests.

    ``train.steps`` follows ``train.epochs``, ``data.train`` and ``data.batch_size`` (it is a
    lazy reference: ``--set train.epochs=...`` updates it).
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; expected one of {list(SETTINGS)}")
    if data not in ("letter_b", "cardiac_like"):
        raise ValueError(f"data must be 'letter_b' or 'cardiac_like', got {data!r}")
    three_d = data == "cardiac_like"
    c = ml_collections.ConfigDict()
    c.method = "atlas_istn"
    c.seed = 42  # the reference scripts' seed
    c.data = ml_collections.ConfigDict(
        {
            # "letter_b" (the PNG set under root, or the built-in generator when root is ""),
            # "cardiac_like" (generated) or "nifti" (a Decathlon-layout folder under root).
            "source": data,
            "root": "",
            "train": 1000 if not three_d else 200,
            "test": 100 if not three_d else 40,
            "size": (64, 64) if not three_d else (64, 64, 64),
            "num_classes": 2 if not three_d else 6,
            "batch_size": 10,
            "augment": False,
            "num_workers": 0,
        }
    )
    c.model = ml_collections.ConfigDict({"variant": "istn"})
    c.stn = ml_collections.ConfigDict({"transform": "full", "integration_steps": 6})
    c.atlas = ml_collections.ConfigDict({"rate": 0.01, "fixed": False})
    c.loss = ml_collections.ConfigDict(
        {
            "lam": 500.0,
            "omega": 1.0,  # weight of the registration terms after the fade-in
            "fade_epoch": 25 if not three_d else 200,
            "fade_width": 25.0,
            "affine_from_epoch": 0,
        }
    )
    c.train = ml_collections.ConfigDict(
        {
            "epochs": 300 if not three_d else 800,
            "decay_epochs": 300 if not three_d else 400,
            "lr": 1e-3,
            "checkpoint_every": 1000,
            "log_every": 10,
            "eval_every": 0,
            "max_to_keep": 3,
        }
    )
    c.refine = ml_collections.ConfigDict(
        {"steps": 50, "lr": 1e-3, "a2s": 1.0, "s2a": 0.0, "lam": -1.0, "from_scratch": False}
    )
    c.eval = ml_collections.ConfigDict(
        {
            "test_sets": ("clean", "corrupt") if not three_d else ("test",),
            "refine_lams": (),
            "chunk": 50 if not three_d else 4,
            "checkpoint": "last",
            "num_figures": 4,
        }
    )
    if setting == "cpu":
        # 1/10 of the paper's epochs; the fade-in and the decay scaled by the same factor, and
        # the atlas rate raised so that 30 updates forget the initial atlas as 300 of 0.01 do:
        # 1 - 0.99 ** 10 = 0.096.
        c.train.update(epochs=30, decay_epochs=30, checkpoint_every=500)
        c.loss.update(fade_epoch=3, fade_width=2.5)
        c.atlas.rate = 0.1
        c.eval.refine_lams = (50.0, 5000.0)
        if three_d:
            # Batches of 2 so that the 40 epochs are 800 steps: with batches of 10 (160 steps)
            # the ITN is still on the all-background plateau of its MSE loss at the end.
            c.data.update(train=40, test=10, size=(32, 32, 32), batch_size=2)
            c.train.update(epochs=40, decay_epochs=20)
            c.loss.update(fade_epoch=10, fade_width=5.0)
    elif setting == "smoke":
        c.data.update(train=8, test=4, batch_size=4)
        c.data.size = (32, 32) if not three_d else (32, 32, 32)
        c.train.update(epochs=2, decay_epochs=2, checkpoint_every=2, log_every=1)
        c.loss.update(fade_epoch=1, fade_width=1.0)
        c.refine.steps = 5
        c.eval.update(chunk=4, num_figures=1)
    # Whole images in batches of data.batch_size, in the engine's names.
    c.data.patch = c.data.get_ref("size")
    c.data.labelled_batch = c.data.get_ref("batch_size")
    c.data.unlabelled_batch = 0
    # ``jaxseg predict`` runs the ITN on whole images of data.size.
    c.eval.patch = c.data.get_ref("size")
    c.eval.stride = c.data.get_ref("size")
    c.eval.batch_size = 1
    c.train.steps = c.train.get_ref("epochs") * (
        c.data.get_ref("train") // c.data.get_ref("batch_size")
    )
    return c


def steps_per_epoch(config: Any) -> int:
    """Training steps per pass over the training cases (the last partial batch is dropped)."""
    spe = int(config.data.train) // int(config.data.batch_size)
    if spe < 1:
        raise ValueError(
            f"data.train ({config.data.train}) must be at least data.batch_size "
            f"({config.data.batch_size})"
        )
    return spe


def _epoch(config: Any, step: jax.Array) -> jax.Array:
    """1-based epoch of the (0-based) step about to be taken."""
    return step // steps_per_epoch(config) + 1


def omega(config: Any, step: jax.Array) -> jax.Array:
    """Weight of the registration terms at ``step`` (0-based): eq. 24's fade-in, times
    ``loss.omega``."""
    fade = float(config.loss.fade_epoch)
    epoch = _epoch(config, jnp.asarray(step)).astype(jnp.float32)
    ramp = jax.nn.sigmoid((epoch - fade) / float(config.loss.fade_width))
    return float(config.loss.omega) * (ramp if fade >= 0 else jnp.ones_like(ramp))


# --------------------------------------------------------------------------------------------
# Networks, transforms, losses


@flax.struct.dataclass
class AtlasState(TrainState):
    """:class:`jaxseg.train.TrainState` plus ``atlas = {"image": (*S, 1), "label": (*S, K)}``."""

    atlas: dict[str, jax.Array]


def _dims(config: Any) -> int:
    return len(tuple(config.data.size))


def _itn(config: Any) -> UNet:
    return UNet.itn(_dims(config), int(config.data.num_classes))


def _stn(config: Any) -> AtlasSTN:
    return AtlasSTN(_dims(config))


def _stn_channels(config: Any) -> int:
    return 2 if config.model.variant == "vml" else 2 * (int(config.data.num_classes) - 1)


def _check_config(config: Any) -> None:
    if config.model.variant not in ("istn", "vml"):
        raise ValueError(f"model.variant must be 'istn' or 'vml', got {config.model.variant!r}")
    if config.stn.transform not in ("full", "svf", "affine"):
        raise ValueError(
            f"stn.transform must be 'full', 'svf' or 'affine', got {config.stn.transform!r}"
        )
    if int(config.data.num_classes) < 2:
        raise ValueError(f"data.num_classes must be >= 2, got {config.data.num_classes}")
    if any(int(s) % 16 for s in config.data.size):
        raise ValueError(f"data.size must be divisible by 16, got {tuple(config.data.size)}")


def affine_voxel_matrix(matrix: jax.Array, shape: Sequence[int]) -> jax.Array:
    """A homogeneous matrix on ``[-1, 1]``-normalised coordinates (``align_corners=True``), as
    the reference STN predicts, expressed on centred voxel coordinates: ``H M H^-1`` with
    ``H = diag((n_i - 1) / 2, 1)``. Use with :func:`jaxseg.geometry.affine_disp`."""
    half = jnp.asarray([(int(n) - 1) / 2 for n in shape] + [1.0], matrix.dtype)
    return (half[:, None] * matrix) / half[None, :]


def transforms(
    config: Any, stn_out: Mapping[str, jax.Array], shape: Sequence[int], affine_on: jax.Array
) -> dict[str, jax.Array]:
    """Forward and inverse transforms of a batch of STN outputs (see the module docstring).

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


def _warp(images: jax.Array, disp: jax.Array, order: int = 1, mode: str = "border") -> jax.Array:
    """``warp`` over a batch: images ``(B, *S, C)`` or one shared ``(*S, C)``."""
    if images.ndim == disp.ndim - 1:
        return jax.vmap(lambda d: warp(images, d, order=order, mode=mode))(disp)
    return jax.vmap(lambda x, d: warp(x, d, order=order, mode=mode))(images, disp)


def _regulariser(nonrigid: jax.Array) -> jax.Array:
    """Smoothness of ``(B, *S, N)`` in the reference's normalised units."""
    shape = nonrigid.shape[1:-1]
    scale = jnp.asarray([2.0 / (n - 1) for n in shape], nonrigid.dtype)
    return smoothness(nonrigid * scale.reshape((1,) * (len(shape) + 1) + (-1,)))


def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a - b))


def _one_hot(config: Any, label: jax.Array) -> jax.Array:
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
    stn_out = _stn(config).apply(
        {"params": params["stn"]}, _stn_input(config, itn_out, image, atlas), train=True
    )
    out = transforms(config, stn_out, shape, affine_on)
    out["itn"] = itn_out
    out["atlas_label"] = _warp(atlas["label"], out["fwd"])
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
    ``(B, *S, K)`` (one-hot labels in training, the ITN output at test time); MSEs over the
    foreground channels. Returns ``(loss, terms)``."""
    terms = {
        "a2s": _mse(out["atlas_label"][..., 1:], target[..., 1:]),
        "reg": _regulariser(out["nonrigid"]),
    }
    # L_s2a needs the target warped to atlas space; skip the warp when its weight is a literal 0.
    if isinstance(s2a, float | int) and s2a == 0:
        terms["s2a"] = jnp.zeros(())
    else:
        warped = _warp(target, out["inv"])
        terms["s2a"] = _mse(warped[..., 1:], atlas_label[None, ..., 1:])
    loss = a2s * terms["a2s"] + s2a * terms["s2a"] + lam * terms["reg"]
    return loss, terms


# --------------------------------------------------------------------------------------------
# State and training


def _optimizer(config: Any) -> optax.GradientTransformation:
    spe = steps_per_epoch(config)
    return make_optimizer(
        {
            "name": "adam",
            "lr": float(config.train.lr),
            "decay_every": spe,
            "decay_rate": 0.5 ** (1.0 / float(config.train.decay_epochs)),
        }
    )


def _init_stn(config: Any, key: jax.Array, optimizer: optax.GradientTransformation) -> NetState:
    size = tuple(config.data.size)
    example = jnp.zeros((1, *size, _stn_channels(config)), jnp.float32)
    return create_net_state(_stn(config), optimizer, key, example, train=False)


def create_state(config: Any, key: jax.Array) -> AtlasState:
    """``AtlasState`` with ``nets = {"itn", "stn"}`` (one Adam each, the same settings: the
    reference's single Adam over both), a zero atlas (:func:`prepare` sets the initial one) and
    the RNG seeded from ``key``."""
    _check_config(config)
    size = tuple(config.data.size)
    k = int(config.data.num_classes)
    itn_key, stn_key, rng = jax.random.split(key, 3)
    optimizer = _optimizer(config)
    itn = create_net_state(
        _itn(config), optimizer, itn_key, jnp.zeros((1, *size, 1), jnp.float32), train=False
    )
    atlas = {
        "image": jnp.zeros((*size, 1), jnp.float32),
        "label": jnp.zeros((*size, k), jnp.float32),
    }
    return AtlasState(
        step=jnp.zeros((), jnp.int32),
        rng=rng,
        nets={"itn": itn, "stn": _init_stn(config, stn_key, optimizer)},
        atlas=atlas,
    )


def make_train_step(config: Any):
    """The pure step ``(state, batch, key) -> (state, metrics)``: one Adam step of both networks
    on ``L = L_s + omega (L_a2s + L_s2a + lambda L_reg)`` (eq. 14; VML: without ``L_s``)."""
    _check_config(config)
    optimizer = _optimizer(config)
    lam = float(config.loss.lam)
    vml = config.model.variant == "vml"
    affine_from = int(config.loss.affine_from_epoch)

    def step(state: AtlasState, batch, key):
        del key
        target = _one_hot(config, batch["label"])
        w = omega(config, state.step)
        affine_on = (_epoch(config, state.step) >= affine_from).astype(jnp.float32)
        params = {name: net.params for name, net in state.nets.items()}

        def loss_fn(params):
            out = forward(config, params, batch["image"], state.atlas, affine_on=affine_on)
            reg_loss, terms = registration_loss(
                out, target, state.atlas["label"], a2s=1.0, s2a=1.0, lam=lam
            )
            seg = _mse(out["itn"], target)
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
        nets = {
            name: net.apply_gradients(grads[name], optimizer) for name, net in state.nets.items()
        }
        return state.replace(nets=nets), metrics

    return step


def _hard_dice(scores: jax.Array, label: jax.Array) -> jax.Array:
    """Dice of ``argmax(scores) > 0`` against ``label > 0`` over the batch (a training metric)."""
    pred = jnp.argmax(scores, axis=-1) > 0
    ref = label > 0
    inter = jnp.sum(pred & ref)
    return 2.0 * inter / jnp.maximum(jnp.sum(pred) + jnp.sum(ref), 1)


def predict(config: Any, nets: Mapping[str, NetState], images: jax.Array) -> dict[str, jax.Array]:
    """``{"prob": (B, *S, K)}``: the ITN output of images ``(B, *S, 1)`` (labels by argmax)."""
    out = _itn(config).apply({"params": nets["itn"].params}, images, train=False)["logits"]
    return {"prob": out}


# --------------------------------------------------------------------------------------------
# Data


def _prepare_case(config: Any, case: Case) -> Case:
    """Resample to ``data.size`` (label by nearest neighbour) and z-score the image."""
    size = tuple(int(s) for s in config.data.size)
    if case.label is None:
        raise ValueError(f"{case.source or case.id}: Atlas-ISTN needs labelled cases")
    if len(case.spatial_shape) != len(size):
        raise ValueError(
            f"{case.source or case.id}: {len(case.spatial_shape)}D case for a "
            f"{len(size)}D data.size {size}"
        )
    if case.image.shape[-1] != 1:
        raise ValueError(f"{case.source or case.id}: one image channel expected")
    if tuple(case.spatial_shape) != size:
        case = resample_to_shape(case, size)
    label = np.asarray(case.label)
    k = int(config.data.num_classes)
    if label.max() >= k or label.min() < 0:
        raise ValueError(
            f"{case.source or case.id}: label values in [{label.min()}, {label.max()}] "
            f"outside range(data.num_classes = {k})"
        )
    return Case(
        id=case.id,
        image=zscore(case.image),
        label=label,
        spacing=case.spacing,
        affine=case.affine,
        source=case.source,
    )


def _letter_b_files(root: Path, n_train: int, n_test: int) -> dict[str, list[Case]]:
    lists = {
        "train": ("train.csv", "train.seg.csv", n_train),
        "clean": ("val.csv", "val.seg.csv", n_test),
        "corrupt": ("test.corrupt.csv", "test.corrupt.seg.csv", n_test),
    }
    out = {}
    for name, (images, labels, n) in lists.items():
        files = png_list_cases(root, root / images, root / labels)
        if len(files) < n:
            raise ValueError(f"{root / images}: {len(files)} cases listed, {n} requested")
        out[name] = [load_png_case(f.image, f.label, case_id=f.id) for f in files[:n]]
    return out


def load_cases(config: Any) -> dict[str, Any]:
    """``{"labelled": training cases, "unlabelled": [], "val": [], "test": first test set,
    "test_sets": {name: cases}}`` of ``config.data``, resampled to ``data.size`` and z-scored.

    Sources: ``letter_b`` (the released PNG set under ``data.root``: the first ``data.train``
    cases of train.csv, ``data.test`` of val.csv as "clean" and of test.corrupt.csv as
    "corrupt"; with no root the built-in generator draws the same sets, clean and corrupted test
    cases sharing their letters); ``cardiac_like`` (generated, test set "test"); ``nifti``
    (a Decathlon-layout folder under ``data.root``: imagesTr/labelsTr, the last ``data.test``
    cases are the test set "test").
    """
    d = config.data
    n_train, n_test = int(d.train), int(d.test)
    if d.source == "letter_b":
        if d.root:
            root = Path(d.root)
            if not root.is_dir():
                raise ValueError(f"{root}: letter-B data folder not found (data.root)")
            sets = _letter_b_files(root, n_train, n_test)
        else:
            gen = functools.partial(synthetic.dataset, "letter_b", shape=(128, 128))
            sets = {
                "train": gen(n_train, seed=_SEEDS["train"]),
                "clean": gen(n_test, seed=_SEEDS["test"]),
                "corrupt": gen(n_test, seed=_SEEDS["test"], corrupt=True),
            }
    elif d.source == "cardiac_like":
        gen = functools.partial(
            synthetic.dataset,
            "cardiac_like",
            shape=tuple(d.size),
            spacing=(128.0 / int(d.size[0]),) * 3,
        )
        sets = {
            "train": gen(n_train, seed=_SEEDS["train"]),
            "test": gen(n_test, seed=_SEEDS["test"]),
        }
    elif d.source == "nifti":
        if not d.root or not Path(d.root).is_dir():
            raise ValueError(f"{d.root!r}: NIfTI data folder not found (data.root)")
        files = decathlon_cases(d.root)
        if len(files) < n_train + n_test:
            raise ValueError(
                f"{d.root}: {len(files)} labelled cases, data.train + data.test = "
                f"{n_train + n_test} requested"
            )
        cases = [load_case(f.image, f.label, case_id=f.id) for f in files]
        sets = {"train": cases[:n_train], "test": cases[len(cases) - n_test :]}
    else:
        raise ValueError(
            f"data.source must be 'letter_b', 'cardiac_like' or 'nifti', got {d.source!r}"
        )
    sets = {name: [_prepare_case(config, c) for c in cases] for name, cases in sets.items()}
    test_sets = {name: cases for name, cases in sets.items() if name != "train"}
    unknown = [name for name in config.eval.test_sets if name not in test_sets]
    if unknown:
        raise ValueError(
            f"eval.test_sets {unknown} not provided by data.source {d.source!r} "
            f"(it has {sorted(test_sets)})"
        )
    test_sets = {name: test_sets[name] for name in config.eval.test_sets}
    return {
        "labelled": sets["train"],
        "unlabelled": [],
        "val": [],
        "test": next(iter(test_sets.values())),
        "test_sets": test_sets,
    }


def _stack(cases: Sequence[Case]) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.asarray(c.image, np.float32) for c in cases])
    labels = np.stack([np.asarray(c.label, np.int32) for c in cases])
    return images, labels


# --------------------------------------------------------------------------------------------
# Atlas construction


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _warped_sums(config: Any) -> Callable:
    """Jitted ``(params, atlas, images, labels) -> (sum of warped images, of warped one-hot
    labels)``, the cases warped to atlas space."""

    def sums(params, atlas, images, labels):
        out = forward(config, params, images, atlas)
        target = _one_hot(config, labels)
        return _warp(images, out["inv"]).sum(0), _warp(target, out["inv"]).sum(0)

    return jax.jit(sums)


def update_atlas(
    config: Any,
    params: Mapping[str, Any],
    atlas: Mapping[str, jax.Array],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rate: float,
) -> dict[str, jax.Array]:
    """Eq. 15-16: ``(1 - rate) atlas + rate mean_i warp(case_i, inv_i)`` for the image and the
    one-hot labelmap, the cases ``images (M, *S, 1)``, ``labels (M, *S)`` warped to atlas space
    by the networks ``params``. ``rate = 1`` with a zero atlas gives the plain mean of the
    warped cases."""
    return _ema_update(config, _warped_sums(config), params, atlas, images, labels, rate)


def _ema_update(config, sums, params, atlas, images, labels, rate) -> dict[str, jax.Array]:
    """:func:`update_atlas` with ``sums`` from :func:`_warped_sums` (built once per run, so
    that the epoch-end updates share one compilation)."""
    image_sum = jnp.zeros_like(atlas["image"])
    label_sum = jnp.zeros_like(atlas["label"])
    chunk = max(1, int(config.eval.chunk))
    for part in _chunks(len(images), chunk):
        a, b = sums(params, atlas, images[part], labels[part])
        image_sum, label_sum = image_sum + a, label_sum + b
    n = len(images)
    return {
        "image": (1.0 - rate) * atlas["image"] + rate * image_sum / n,
        "label": (1.0 - rate) * atlas["label"] + rate * label_sum / n,
    }


def _initial_atlas(config: Any, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    k = int(config.data.num_classes)
    return {
        "image": images.mean(0).astype(np.float32),
        "label": (labels[..., None] == np.arange(k)).mean(0).astype(np.float32),
    }


def prepare(
    config: Any, state: AtlasState, cases: Mapping[str, Any], workdir: str | os.PathLike
) -> tuple[AtlasState, list[Hook]]:
    """The fresh ``state`` with the initial atlas (the mean of the training cases) and the
    epoch-end hook that updates the atlas and writes it to ``<workdir>/atlas/``."""
    workdir = Path(workdir)
    images, labels = _stack(cases["labelled"])
    initial = _initial_atlas(config, images, labels)
    atlas_dir = workdir / "atlas"
    if not (atlas_dir / "atlas_initial_image.nii.gz").exists():
        _write_atlas(config, initial, atlas_dir, "atlas_initial")
    sharding = jax.tree.leaves(state.atlas)[0].sharding
    state = state.replace(atlas=jax.device_put(initial, sharding))
    rate = float(config.atlas.rate)
    sums = _warped_sums(config)

    def update(state: AtlasState, step: int) -> AtlasState:
        if not config.atlas.fixed:
            params = {name: net.params for name, net in state.nets.items()}
            atlas = _ema_update(config, sums, params, state.atlas, images, labels, rate)
            state = state.replace(atlas=jax.device_put(atlas, sharding))
        _write_atlas(config, jax.device_get(state.atlas), atlas_dir, "atlas")
        _atlas_figure(
            initial,
            jax.device_get(state.atlas),
            workdir / "figures" / "atlas.png",
            f"epoch {step // steps_per_epoch(config)}",
        )
        return state

    return state, [Hook(every=steps_per_epoch(config), fn=update)]


def _write_atlas(config: Any, atlas: Mapping[str, Any], directory: Path, stem: str) -> None:
    """``<stem>_image.nii.gz`` (the atlas image) and ``<stem>_label.nii.gz`` (its soft labelmap,
    one volume per class); a 2D atlas is stored as one slice."""
    image, label = np.asarray(atlas["image"])[..., 0], np.asarray(atlas["label"])
    if _dims(config) == 2:
        image, label = image[:, :, None], label[:, :, None, :]
    directory.mkdir(parents=True, exist_ok=True)
    save_nifti(directory / f"{stem}_image.nii.gz", image)
    save_nifti(directory / f"{stem}_label.nii.gz", label)


# --------------------------------------------------------------------------------------------
# Test-time refinement


def _refine_lam(config: Any) -> float:
    """``lambda*`` of the refinement: ``refine.lam``, or the training ``loss.lam`` when that is
    negative (the default)."""
    lam = float(config.refine.lam)
    return lam if lam >= 0 else float(config.loss.lam)


def make_refine(config: Any, *, lam: float | None = None) -> Callable:
    """``refine(stn_params, images, itn_out, atlas) -> (params, losses)``, jitted.

    For each case of ``images (B, *S, 1)`` with ITN output ``itn_out (B, *S, K)``: ``refine.steps``
    Adam steps (``refine.lr``) on its own copy of ``stn_params`` of
    ``refine.a2s L*_a2s + refine.s2a L*_s2a + lam L_reg`` (``lam`` default ``refine.lam``, or
    ``loss.lam`` when that is negative). Returns the per-case parameters (leading axis ``B``)
    and the loss before each step and after the last, ``(B, steps + 1)``.
    """
    steps = int(config.refine.steps)
    if lam is None:
        lam = _refine_lam(config)
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


# --------------------------------------------------------------------------------------------
# Evaluation


def _outputs(config: Any) -> Callable:
    """Jitted ``(params, atlas, images, itn_out=None) -> {"itn", "atlas_label", "fwd", "inv"}``."""

    def outputs(params, atlas, images, itn_out=None):
        out = forward(config, params, images, atlas, itn_out=itn_out)
        return {k: out[k] for k in ("itn", "atlas_label", "fwd", "inv")}

    return jax.jit(outputs)


def _labels(scores: np.ndarray) -> np.ndarray:
    return np.argmax(np.asarray(scores), axis=-1).astype(np.int32)


def _summary(records: list[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    table = {n: np.array([r[n] for r in records], float) for n in names}
    return {
        "mean": {n: _finite(nanmean(v)) for n, v in table.items()},
        "std": {n: _finite(nanstd(v)) for n, v in table.items()},
        "cases": records,
    }


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


_METRICS = ("dice", "asd", "hd", "hd95")


def _case_metrics(pred: np.ndarray, ref: np.ndarray, k: int) -> dict[str, float]:
    # Pixels (voxels), as the paper's letter-B figures: no spacing.
    scores = evaluate_case(pred, ref, spacing=None, labels=list(range(1, k)))["mean"]
    return {
        "dice": scores["dice"],
        "asd": scores["assd"],
        "hd": scores["hausdorff"],
        "hd95": scores["hd95"],
    }


def evaluate(
    config: Any,
    state: AtlasState,
    test_sets: Mapping[str, Sequence[Case]],
    *,
    out_dir: str | os.PathLike,
    progress: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a trained state on each test set: ITN, 1-pass and refined predictions.

    Writes ``<out_dir>/metrics.json``::

        {"<test set>": {"itn" | "one_pass" | "refine" [| "refine_lam<v>"]:
                           {"mean": {dice, asd, hd, hd95}, "std": {...}, "cases": [...]},
                        "inverse_consistency": {"ic_dice": {"one_pass", "refine"},
                                                "mice": {"one_pass", "refine"}},
                        "subject_to_subject": {"dice": {"one_pass", "refine"}}},
         "protocol": {...}, **metadata}

    Metrics are in pixels/voxels (no spacing, as the paper's letter-B results): Dice, ASD (the
    symmetric average surface distance), HD (Hausdorff) and HD95, averaged over the foreground
    labels. Inverse consistency (MICE in voxels, IC-Dice) of each case's transform pair on its
    reference labels; subject-to-subject Dice maps each case to the next one of the set through
    the atlas (eq. 22-23). ``refine_lam<v>`` outputs refine with each ``eval.refine_lams`` value
    (Fig. 8). Figures go to ``<out_dir>/figures/``.
    """
    out_dir = Path(out_dir)
    k = int(config.data.num_classes)
    chunk = max(1, int(config.eval.chunk))
    atlas = state.atlas
    params = {name: net.params for name, net in state.nets.items()}
    stn_start = params["stn"]
    if config.refine.from_scratch:
        stn_start = _init_stn(config, jax.random.key(int(config.seed) + 1), optax.adam(1.0)).params
    refiners = {"refine": make_refine(config)}
    for lam in config.eval.refine_lams:
        refiners[f"refine_lam{float(lam):g}"] = make_refine(config, lam=float(lam))
    result: dict[str, Any] = {}
    outputs = _outputs(config)
    refined_outputs = jax.jit(
        jax.vmap(lambda p, x, y: outputs({"stn": p}, atlas, x[None], y[None]))
    )
    for set_name, cases in test_sets.items():
        images, refs = _stack(cases)
        preds: dict[str, list[np.ndarray]] = {"itn": [], "one_pass": []}
        fields: dict[str, list[np.ndarray]] = {"one_pass": [], "refine": []}
        losses = []
        for name in refiners:
            preds[name] = []
        bar = tqdm(
            total=len(cases),
            desc=f"evaluate {set_name}",
            disable=not (progress if progress is not None else False),
        )
        for part in _chunks(len(cases), chunk):
            x = jnp.asarray(images[part])
            out = outputs(params, atlas, x)
            itn_out = out["itn"]
            preds["itn"].append(_labels(itn_out))
            preds["one_pass"].append(_labels(out["atlas_label"]))
            fields["one_pass"].append(np.stack([np.asarray(out["fwd"]), np.asarray(out["inv"])]))
            for name, refine in refiners.items():
                stn, loss = refine(stn_start, x, itn_out, atlas)
                refined = refined_outputs(stn, x, itn_out)
                preds[name].append(_labels(refined["atlas_label"][:, 0]))
                if name == "refine":
                    losses.append(np.asarray(loss))
                    fields["refine"].append(
                        np.stack(
                            [np.asarray(refined["fwd"][:, 0]), np.asarray(refined["inv"][:, 0])]
                        )
                    )
            bar.update(part.stop - part.start)
        bar.close()
        preds = {name: np.concatenate(p) for name, p in preds.items()}
        fields = {name: np.concatenate(f, axis=1) for name, f in fields.items()}
        entry: dict[str, Any] = {}
        for name, labels in preds.items():
            records = []
            for case, pred, ref in zip(cases, labels, refs):
                records.append({"id": case.id, **_case_metrics(pred, ref, k)})
            entry[name] = _summary(records, _METRICS)
        entry["inverse_consistency"] = {"ic_dice": {}, "mice": {}}
        entry["subject_to_subject"] = {"dice": {}}
        for name, (fwd, inv) in fields.items():
            ic = [inverse_consistency(f, i, r) for f, i, r in zip(fwd, inv, refs)]
            entry["inverse_consistency"]["ic_dice"][name] = _finite(
                nanmean([c["ic_dice"] for c in ic])
            )
            entry["inverse_consistency"]["mice"][name] = _finite(nanmean([c["mice"] for c in ic]))
            entry["subject_to_subject"]["dice"][name] = _subject_to_subject_dice(fwd, inv, refs, k)
        loss = np.concatenate(losses)
        entry["refine_loss"] = {
            "before": _finite(loss[:, 0].mean()),
            "after": _finite(loss[:, -1].mean()),
        }
        result[set_name] = entry
        _prediction_figures(config, cases, preds, fields, atlas, out_dir / "figures", set_name)
    result["protocol"] = {
        "units": "pixels/voxels",
        "refine": {
            "steps": int(config.refine.steps),
            "lr": float(config.refine.lr),
            "a2s": float(config.refine.a2s),
            "s2a": float(config.refine.s2a),
            "lam": _refine_lam(config),
            "from_scratch": bool(config.refine.from_scratch),
        },
    }
    result.update(metadata or {})
    write_json_atomic(out_dir / "metrics.json", json_safe(result))
    _summary_figure(result, test_sets, out_dir / "figures" / "summary.png")
    return result


def _subject_to_subject_dice(fwd, inv, refs, k: int) -> float | None:
    """Mean Dice of case ``i``'s labels mapped to case ``i + 1`` through the atlas."""
    if len(refs) < 2:
        return None
    scores = []
    for i in range(len(refs) - 1):
        disp = subject_to_subject(jnp.asarray(inv[i]), jnp.asarray(fwd[i + 1]))
        mapped = np.asarray(warp(jnp.asarray(refs[i]), disp, order=0))
        scores.append(
            evaluate_case(mapped, refs[i + 1], spacing=None, labels=list(range(1, k)))["mean"][
                "dice"
            ]
        )
    return _finite(nanmean(scores))


# --------------------------------------------------------------------------------------------
# Figures


def _slice(volume: np.ndarray) -> np.ndarray:
    """A 2D map as it is; the middle slice along the last axis of a 3D one."""
    volume = np.asarray(volume)
    return volume if volume.ndim == 2 else volume[:, :, volume.shape[2] // 2]


def _atlas_figure(initial, current, path: Path, title: str) -> None:
    fig = new_figure((6.4, 6.4))
    axes = fig.subplots(2, 2, squeeze=False)
    for row, (atlas, name) in enumerate(((initial, "initial"), (current, title))):
        image = _slice(np.asarray(atlas["image"])[..., 0])
        label = np.asarray(atlas["label"])
        fg = _slice(1.0 - label[..., 0])
        axes[row, 0].imshow(image, cmap="gray")
        axes[row, 0].set_title(f"atlas image ({name})", fontsize=9)
        axes[row, 1].imshow(fg, cmap="magma", vmin=0, vmax=1)
        axes[row, 1].set_title(f"atlas foreground ({name})", fontsize=9)
        for ax in axes[row]:
            ax.set_axis_off()
    save_png(fig, str(path))


def _grid_lines(shape: Sequence[int], spacing: int = 4) -> np.ndarray:
    grid = np.asarray(identity_grid(tuple(shape)))
    lines = np.zeros(tuple(shape), np.float32)
    for axis in range(2):
        lines = np.maximum(lines, (np.round(grid[..., axis]) % spacing == 0).astype(np.float32))
    return lines


def _prediction_figures(config, cases, preds, fields, atlas, out: Path, set_name: str) -> None:
    """Figs. 6-7: image with reference and predicted contours, the atlas warp, deformed grids."""
    n = min(int(config.eval.num_figures), len(cases))
    if n == 0:
        return
    columns = ["itn", "one_pass", "refine"]
    fig = new_figure((3.0 * (len(columns) + 2), 3.1 * n))
    axes = fig.subplots(n, len(columns) + 2, squeeze=False)
    grid = _grid_lines(np.asarray(atlas["image"]).shape[:-1])
    for row in range(n):
        case = cases[row]
        image = _slice(np.asarray(case.image)[..., 0])
        ref = _slice(np.asarray(case.label))
        for col, name in enumerate(columns):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray")
            draw_contours(ax, ref, "#2ca02c", 1.4)
            draw_contours(ax, _slice(preds[name][row]), "#d62728", 1.0)
            ax.set_title(f"{case.id}: {name}", fontsize=8)
        for col, name in enumerate(("one_pass", "refine"), start=len(columns)):
            ax = axes[row, col]
            fwd = fields[name][0][row]
            warped = np.asarray(warp(jnp.asarray(grid), jnp.asarray(fwd), mode="zeros"))
            ax.imshow(_slice(warped), cmap="gray_r")
            draw_contours(ax, _slice(preds[name][row]), "#d62728", 1.0)
            ax.set_title(f"atlas grid to subject ({name})", fontsize=8)
        for ax in axes[row]:
            ax.set_axis_off()
    fig.suptitle(f"{set_name}: reference (green) and prediction (red)", fontsize=10)
    save_png(fig, str(out / f"{set_name}_predictions.png"))


def _summary_figure(result, test_sets, path: Path) -> None:
    """Fig. 8: Dice, ASD and HD per output, one group per test set."""
    outputs = [
        k for k in result[next(iter(test_sets))] if "mean" in result[next(iter(test_sets))][k]
    ]
    fig = new_figure((4.0 * 3, 3.6))
    axes = fig.subplots(1, 3, squeeze=False)[0]
    width = 0.8 / max(len(outputs), 1)
    for ax, metric in zip(axes, ("dice", "asd", "hd")):
        for j, name in enumerate(outputs):
            values = [[c[metric] for c in result[s][name]["cases"]] for s in test_sets]
            pos = np.arange(len(test_sets)) + (j - (len(outputs) - 1) / 2) * width
            means = [nanmean(v) for v in values]
            stds = [nanstd(v) for v in values]
            ax.bar(pos, means, width, yerr=stds, label=name, capsize=2)
        ax.set_xticks(np.arange(len(test_sets)), list(test_sets))
        ax.set_title(metric.upper() if metric != "dice" else "Dice", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=7)
    save_png(fig, str(path))
