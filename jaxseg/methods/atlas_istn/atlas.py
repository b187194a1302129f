"""The atlas (eq. 15-16): its initial value, the epoch-end update and its files."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg import viz
from jaxseg.data.nifti import save_nifti
from jaxseg.methods.atlas_istn.cases import chunks, stack_cases
from jaxseg.methods.atlas_istn.config import steps_per_epoch
from jaxseg.methods.atlas_istn.model import AtlasState, forward, one_hot, warp_batch
from jaxseg.train import Hook

__all__ = ["initial_atlas", "prepare", "update_atlas", "write_atlas"]


def initial_atlas(config: Any, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The mean of the training images ``(M, *S, 1)`` and of their one-hot labels ``(M, *S)``:
    ``{"image": (*S, 1), "label": (*S, K)}`` float32."""
    k = int(config.data.num_classes)
    return {
        "image": images.mean(0).astype(np.float32),
        "label": (labels[..., None] == np.arange(k)).mean(0).astype(np.float32),
    }


def _warped_sums(config: Any) -> Callable:
    """Jitted ``(params, atlas, images, labels) -> (sum of warped images, of warped one-hot
    labels)``, the cases warped to atlas space."""

    def sums(params, atlas, images, labels):
        out = forward(config, params, images, atlas)
        target = one_hot(config, labels)
        return warp_batch(images, out["inv"]).sum(0), warp_batch(target, out["inv"]).sum(0)

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
    by the networks ``params`` (in chunks of ``eval.chunk`` cases). ``rate = 1`` with a zero
    atlas gives the plain mean of the warped cases."""
    return _ema_update(config, _warped_sums(config), params, atlas, images, labels, rate)


def _ema_update(config, sums, params, atlas, images, labels, rate) -> dict[str, jax.Array]:
    """:func:`update_atlas` with ``sums`` from :func:`_warped_sums` (built once per run, so
    that the epoch-end updates share one compilation)."""
    image_sum = jnp.zeros_like(atlas["image"])
    label_sum = jnp.zeros_like(atlas["label"])
    for part in chunks(len(images), max(1, int(config.eval.chunk))):
        a, b = sums(params, atlas, images[part], labels[part])
        image_sum, label_sum = image_sum + a, label_sum + b
    n = len(images)
    return {
        "image": (1.0 - rate) * atlas["image"] + rate * image_sum / n,
        "label": (1.0 - rate) * atlas["label"] + rate * label_sum / n,
    }


def prepare(
    config: Any, state: AtlasState, split: Any, workdir: str | os.PathLike
) -> tuple[AtlasState, list[Hook]]:
    """The fresh ``state`` with the initial atlas, the mean of the training cases
    ``split.labelled`` (prepared by :func:`~jaxseg.methods.atlas_istn.cases.prepare_case`), and
    the epoch-end hook that updates the atlas (unless ``atlas.fixed``) and writes it to
    ``<workdir>/atlas/`` and ``<workdir>/figures/atlas.png``.

    Raises:
      ValueError: if the split does not have ``data.labelled`` training cases (the epoch length
        that ``train.steps`` and the schedules were computed with).
    """
    workdir = Path(workdir)
    if len(split.labelled) != int(config.data.labelled):
        raise ValueError(
            f"the data source gives {len(split.labelled)} training cases, data.labelled is "
            f"{config.data.labelled}: set data.labelled to the number of training cases"
        )
    images, labels = stack_cases(split.labelled)
    initial = initial_atlas(config, images, labels)
    atlas_dir = workdir / "atlas"
    if not (atlas_dir / "atlas_initial_image.nii.gz").exists():
        write_atlas(config, initial, atlas_dir, "atlas_initial")
    sharding = jax.tree.leaves(state.atlas)[0].sharding
    state = state.replace(atlas=jax.device_put(initial, sharding))
    rate = float(config.atlas.rate)
    sums = _warped_sums(config)
    every = steps_per_epoch(config)

    def update(state: AtlasState, step: int) -> AtlasState:
        if not config.atlas.fixed:
            params = {name: net.params for name, net in state.nets.items()}
            atlas = _ema_update(config, sums, params, state.atlas, images, labels, rate)
            state = state.replace(atlas=jax.device_put(atlas, sharding))
        current = jax.device_get(state.atlas)
        write_atlas(config, current, atlas_dir, "atlas")
        viz.atlas_figure(
            initial, current, workdir / "figures" / "atlas.png", f"epoch {step // every}"
        )
        return state

    return state, [Hook(every=every, fn=update)]


def write_atlas(config: Any, atlas: Mapping[str, Any], directory: Path, stem: str) -> None:
    """``<stem>_image.nii.gz`` (the atlas image) and ``<stem>_label.nii.gz`` (its soft labelmap,
    one volume per class) in ``directory``; a 2D atlas is stored as one slice."""
    image, label = np.asarray(atlas["image"])[..., 0], np.asarray(atlas["label"])
    if len(tuple(config.data.size)) == 2:
        image, label = image[:, :, None], label[:, :, None, :]
    directory.mkdir(parents=True, exist_ok=True)
    save_nifti(directory / f"{stem}_image.nii.gz", image)
    save_nifti(directory / f"{stem}_label.nii.gz", label)
