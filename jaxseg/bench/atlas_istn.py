"""Atlas-ISTN: a training step and the test-time refinement of one case.

Rows (randomly initialised networks, a blob image and atlas; the state donated as in training):

* the training step of the letter-B ``paper`` config: ITN + STN forward and backward, warps,
  batch 10 of 64x64;
* the training step of the 3D config: batch 10 of 64^3 on an accelerator (batch 2 of 32^3 on
  CPU, where 3D convolutions and gathers are slow);
* the test-time refinement of one case: 100 Adam iterations of the STN on
  ``L*_a2s + lambda L_reg`` in one compiled loop (:func:`jaxseg.methods.atlas_istn.make_refine`);
  128^3 on an accelerator (the paper: about 20 s for 100 iterations at 128^3 on a V100), 32^3
  on CPU.

Reported: median seconds after compilation and warm-up, and iterations per second. No peer.
``--quick``: fewer repeats.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxseg.bench import harness
from jaxseg.methods import atlas_istn


def _inputs(config, batch: int):
    """A batch of one blob image (two labels in halves) and the atlas of the same blob."""
    size = tuple(config.data.size)
    k = int(config.data.num_classes)
    grid = np.indices(size, dtype=np.float32)
    centre = (np.asarray(size, np.float32) - 1) / 2
    radius = np.sqrt(sum(((g - c) / (n / 4)) ** 2 for g, c, n in zip(grid, centre, size)))
    label = np.minimum((radius < 1) * (1 + (grid[0] > centre[0])), k - 1).astype(np.int32)
    image = (label + 0.3 * np.random.default_rng(0).standard_normal(size)).astype(np.float32)
    one_hot = (label[..., None] == np.arange(k)).astype(np.float32)
    atlas = {"image": image[..., None], "label": one_hot}
    batch_arrays = {
        "image": np.broadcast_to(image[None, ..., None], (batch, *size, 1)).copy(),
        "label": np.broadcast_to(label[None], (batch, *size)).copy(),
    }
    return batch_arrays, atlas


def _config(data: str, size: tuple[int, ...]):
    config = atlas_istn.default_config("paper", data=data)
    config.data.size = size
    return config


def _step_row(data: str, size: tuple[int, ...], batch: int, repeats: int) -> dict:
    config = _config(data, size)
    inputs, atlas = _inputs(config, batch)
    state = jax.jit(functools.partial(atlas_istn.create_state, config))(jax.random.key(0))
    timing = harness.measure_train_step(
        atlas_istn.make_train_step(config),
        state.replace(atlas=jax.device_put(atlas)),
        jax.device_put(inputs),
        repeats=repeats,
    )
    return {
        "name": f"training step, {data}, {batch}x{'x'.join(map(str, size))}",
        "peer": None,
        "input_shape": [batch, *size, 1],
        "ours": timing,
        "iterations_per_s": 1.0 / timing["median_s"],
    }


def _refine_row(size: tuple[int, ...], steps: int, repeats: int) -> dict:
    config = _config("cardiac_like", size)
    config.refine.steps = steps
    inputs, atlas = _inputs(config, 1)
    state = jax.jit(functools.partial(atlas_istn.create_state, config))(jax.random.key(0))
    image = jax.device_put(inputs["image"])
    itn_out = jax.jit(lambda nets, x: atlas_istn.predict(config, nets, x)["prob"])(
        state.nets, image
    )
    refine = atlas_istn.make_refine(config)
    stn, atlas = state.nets["stn"].params, jax.device_put(atlas)
    timing = harness.measure(
        lambda: refine(stn, image, itn_out, atlas)[1], warmup=1, repeats=repeats
    )
    return {
        "name": f"refinement of one case, {steps} iterations, {'x'.join(map(str, size))}",
        "peer": None,
        "input_shape": [1, *size, 1],
        "ours": timing,
        "iterations_per_s": steps / timing["median_s"],
    }


def run(quick: bool = False) -> list[dict]:
    accelerated = jax.default_backend() != "cpu"
    repeats = 3 if quick else 7
    return [
        _step_row("letter_b", (64, 64), 10, repeats),
        _step_row(
            "cardiac_like",
            (64,) * 3 if accelerated else (32,) * 3,
            10 if accelerated else 2,
            repeats,
        ),
        _refine_row((128,) * 3 if accelerated else (32,) * 3, 100, 3),
    ]


if __name__ == "__main__":
    harness.main("atlas_istn")
