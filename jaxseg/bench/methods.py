"""One training iteration of each method (supervised V-Net, SASSNet, DTML), as in training.

One row per method: the jitted training step of the method module's ``make_train_step`` (its
``paper`` config: V-Net with 16 filters, SASSNet's 64-filter discriminator) on a batch of 2
labelled + 2 unlabelled crops of 112x112x80 (the LA papers' batch; the supervised baseline takes
the 2 labelled ones), with the state donated as in the training loop. A SASSNet iteration is the
generator update (V-Net forward and backward, discriminator forward and backward through its
input) plus the discriminator update (V-Net forward in evaluation mode, discriminator forward and
backward); a DTML iteration is the forward and backward of two V-Nets. SDM targets are computed
in the step. Reported: median seconds per iteration after compilation and warm-up, and
iterations per second. No peer: the reference PyTorch code would need its data loader; the
``nets`` suite compares the networks alone with PyTorch.

``--quick`` uses 112x112x80 still but fewer repeats.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxseg.bench import harness
from jaxseg.methods import dtml, sassnet, supervised

METHODS = {"supervised": supervised, "sassnet": sassnet, "dtml": dtml}

PATCH = (112, 112, 80)


def batch(labelled: int, unlabelled: int, patch: tuple[int, ...] = PATCH) -> dict[str, np.ndarray]:
    """``labelled + unlabelled`` noisy images ``(n, *patch, 1)`` of a centred box (the middle
    half of every axis), its label ``(n, *patch)`` (zero for the unlabelled items) and the
    ``labelled`` flags."""
    rng = np.random.default_rng(0)
    n = labelled + unlabelled
    label = np.zeros((n, *patch), np.int32)
    label[(slice(None), *(slice(s // 4, 3 * s // 4) for s in patch))] = 1
    image = (label + 0.5 * rng.standard_normal(label.shape)).astype(np.float32)[..., None]
    label[labelled:] = 0
    return {"image": image, "label": label, "labelled": np.arange(n) < labelled}


def train_step_row(
    name: str,
    setting: str = "paper",
    patch: tuple[int, ...] = PATCH,
    *,
    warmup: int = 2,
    repeats: int = 5,
) -> dict:
    """The row of one training iteration of method ``name`` (a key of :data:`METHODS`) in its
    config ``setting``, on 2 labelled (+ 2 unlabelled but for the supervised baseline) crops of
    ``patch`` voxels."""
    method = METHODS[name]
    config = method.default_config(setting)
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
        + ("" if setting == "paper" else f" ({setting})"),
        "peer": None,
        "input_shape": [items, *patch, 1],
        "ours": timing,
        "iterations_per_s": 1.0 / timing["median_s"],
    }


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 5
    return [train_step_row(name, repeats=repeats) for name in METHODS]


if __name__ == "__main__":
    harness.main("methods")
