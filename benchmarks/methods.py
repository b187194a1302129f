"""One training iteration of each method (supervised V-Net, SASSNet, DTML), as in training.

One row per method: the jitted training step of ``make_train_step`` (the method's ``paper``
config: V-Net with 16 filters, SASSNet's 64-filter discriminator) on a batch of 2 labelled + 2
unlabelled crops of 112x112x80 (the LA papers' batch; the supervised baseline takes the 2
labelled ones), with the state donated as in the training loop. A SASSNet iteration is the
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

from benchmarks import harness
from jaxseg.methods import get_method

PATCH = (112, 112, 80)


def _batch(labelled: int, unlabelled: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = labelled + unlabelled
    label = np.zeros((n, *PATCH), np.int32)
    label[:, 30:80, 35:75, 20:60] = 1
    image = (label + 0.5 * rng.standard_normal(label.shape)).astype(np.float32)[..., None]
    label[labelled:] = 0
    return {"image": image, "label": label, "labelled": np.arange(n) < labelled}


def _row(name: str, repeats: int) -> dict:
    method = get_method(name)
    config = method.default_config("paper")
    batch = jax.device_put(_batch(2, 0 if name == "supervised" else 2))
    state = jax.jit(functools.partial(method.create_state, config))(jax.random.key(0))
    timing = harness.measure_train_step(
        method.make_train_step(config), state, batch, repeats=repeats
    )
    items = int(batch["image"].shape[0])
    return {
        "name": f"{name} iteration {items}x{'x'.join(map(str, PATCH))}",
        "peer": None,
        "input_shape": [items, *PATCH, 1],
        "ours": timing,
        "iterations_per_s": 1.0 / timing["median_s"],
    }


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 5
    return [_row(name, repeats) for name in ("supervised", "sassnet", "dtml")]


if __name__ == "__main__":
    harness.main("methods")
