"""One training iteration of each method (supervised V-Net, SASSNet, DTML, STIPPLE), as in
training, in float32 and in mixed bfloat16 precision.

One row per method and precision (``train.precision`` "float32", the papers' numerics, and
"bfloat16": convolutions and activations in bfloat16, parameters, optimizer states and losses in
float32): the jitted training step of the method module's ``make_train_step`` in its ``paper``
config, with the state donated as in the training loop. The V-Net methods take a batch of 2
labelled + 2 unlabelled crops of 112x112x80 (the LA papers' batch; the supervised baseline takes
the 2 labelled ones): a SASSNet iteration is the generator update (V-Net forward and backward,
discriminator forward and backward through its input) plus the discriminator update (V-Net
forward in evaluation mode, discriminator forward and backward); a DTML iteration is the forward
and backward of two V-Nets; SDM targets are computed in the step. STIPPLE takes 3 labelled + 3
pseudo-labelled axial slices of 512x512 (its 2D U-Net of 31 M parameters, with the image, prior,
pseudo-label and mask channels). Reported: median seconds per iteration after compilation and
warm-up, iterations per second, and the peak memory so far (:func:`harness.peak_memory`). No
peer: the reference PyTorch code would need its data loader; the ``nets`` suite compares the
networks alone with PyTorch.

``--quick`` uses the same sizes but fewer repeats.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxseg.bench import harness
from jaxseg.methods import dtml, sassnet, stipple, supervised

METHODS = {"supervised": supervised, "sassnet": sassnet, "dtml": dtml, "stipple": stipple}

PATCH = (112, 112, 80)

PRECISIONS = ("float32", "bfloat16")


def batch(
    labelled: int, unlabelled: int, patch: tuple[int, ...] = PATCH, *, channels: int = 1
) -> dict[str, np.ndarray]:
    """``labelled + unlabelled`` noisy images ``(n, *patch, channels)`` of a centred box (the
    middle half of every axis; further channels 0.5: a uniform prior, and pseudo-labels and
    masks that select half the voxels), its label ``(n, *patch)`` (zero for the unlabelled
    items) and the ``labelled`` flags."""
    rng = np.random.default_rng(0)
    n = labelled + unlabelled
    label = np.zeros((n, *patch), np.int32)
    label[(slice(None), *(slice(s // 4, 3 * s // 4) for s in patch))] = 1
    image = (label + 0.5 * rng.standard_normal(label.shape)).astype(np.float32)[..., None]
    extra = np.full((*image.shape[:-1], channels - 1), 0.5, np.float32)
    label[labelled:] = 0
    image = np.concatenate([image, extra], axis=-1)
    return {"image": image, "label": label, "labelled": np.arange(n) < labelled}


def train_step_row(
    name: str,
    setting: str = "paper",
    patch: tuple[int, ...] = PATCH,
    *,
    precision: str = "float32",
    warmup: int = 2,
    repeats: int = 5,
) -> dict:
    """The row of one training iteration of method ``name`` (a key of :data:`METHODS`) in its
    config ``setting`` and ``precision``, on 2 labelled (+ 2 unlabelled but for the supervised
    baseline) crops of ``patch`` voxels (STIPPLE: 3 + 3 slices of its config's patch)."""
    method = METHODS[name]
    config = method.default_config(setting)
    config.train.precision = precision
    if name == "stipple":
        patch = tuple(config.data.patch)
        inputs = jax.device_put(batch(3, 3, patch, channels=4))
    else:
        config.data.patch = patch
        inputs = jax.device_put(batch(2, 0 if name == "supervised" else 2, patch))
    # The values of the initial parameters do not matter here; the non-partitionable threefry
    # compiles the initialisation several times faster on CPU (a V-Net: 25 s -> 5 s).
    with jax.threefry_partitionable(False):
        state = jax.jit(functools.partial(method.create_state, config))(jax.random.key(0))
    timing = harness.measure_train_step(
        method.make_train_step(config), state, inputs, warmup=warmup, repeats=repeats
    )
    items = int(inputs["image"].shape[0])
    size = "x".join(map(str, patch))
    return {
        "name": f"{name} iteration {items}x{size}"
        + ("" if setting == "paper" else f" ({setting})")
        + ("" if precision == "float32" else f" {precision}"),
        "peer": None,
        "precision": precision,
        "input_shape": list(inputs["image"].shape),
        "ours": timing,
        "iterations_per_s": 1.0 / timing["median_s"],
        **harness.peak_memory(),
    }


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 5
    return [
        train_step_row(name, precision=precision, repeats=repeats)
        for name in METHODS
        for precision in PRECISIONS
    ]


if __name__ == "__main__":
    harness.main("methods")
