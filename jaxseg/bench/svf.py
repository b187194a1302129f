"""Scaling-and-squaring integration and warping, against MONAI and PyTorch when installed.

Rows:
- ``integrate_svf`` (7 steps, 128^3) vs MONAI ``DVF2DDF`` (7 steps, bilinear, border padding,
  the same algorithm); target: no slower (speed-up >= 1).
- the same integration written with ``jax.scipy.ndimage.map_coordinates``, the alternative
  formulation ``warp`` replaced (for the record, not a target).
- one ``warp`` of a 3-channel 128^3 field vs ``torch.nn.functional.grid_sample``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import jax.scipy.ndimage as jnd
import numpy as np

from jaxseg.bench import harness
from jaxseg.demo import smooth_velocity
from jaxseg.geometry import identity_grid, integrate_svf, warp

SHAPE = (128, 128, 128)
STEPS = 7


@jax.jit
def integrate_with_map_coordinates(velocity):
    grid = identity_grid(velocity.shape[:-1])

    def step(_, u):
        coords = [grid[..., i] + u[..., i] for i in range(u.shape[-1])]
        warped = [
            jnd.map_coordinates(u[..., c], coords, order=1, mode="nearest")
            for c in range(u.shape[-1])
        ]
        return u + jnp.stack(warped, axis=-1)

    return jax.lax.fori_loop(0, STEPS, step, velocity / 2**STEPS)


def _torch_peers(velocity):
    """MONAI DVF2DDF and grid_sample callables, or None where the package is missing."""
    try:
        import torch
    except ImportError:
        return None, None
    torch.set_num_threads(harness.cpu_threads())
    v = torch.from_numpy(np.moveaxis(velocity, -1, 0)[None].copy())
    # grid_sample takes (x, y, z) = reversed axes in [-1, 1] (align_corners=True).
    sizes = np.asarray(velocity.shape[:-1], np.float32) - 1
    points = np.asarray(identity_grid(velocity.shape[:-1])) + velocity
    grid = torch.from_numpy((points / sizes * 2 - 1)[..., ::-1].copy())[None]

    def grid_sample():
        with torch.no_grad():
            return torch.nn.functional.grid_sample(
                v, grid, mode="bilinear", padding_mode="border", align_corners=True
            )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from monai.networks.blocks import DVF2DDF

            dvf2ddf = DVF2DDF(num_steps=STEPS, mode="bilinear", padding_mode="border")
    except ImportError:
        return None, grid_sample

    def monai():
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dvf2ddf(v)

    return monai, grid_sample


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 7
    velocity = smooth_velocity(SHAPE, amplitude=3.0, sigma=8.0, rng=np.random.default_rng(0))
    v = jnp.asarray(velocity)
    monai, grid_sample = _torch_peers(velocity)
    size = "x".join(map(str, SHAPE))
    return [
        harness.compare(
            f"integrate_svf {STEPS} steps {size}",
            lambda: integrate_svf(v, steps=STEPS),
            monai,
            peer_name="monai DVF2DDF",
            target=1.0,
            repeats=repeats,
        ),
        harness.compare(
            f"integrate_svf vs map_coordinates form {size}",
            lambda: integrate_svf(v, steps=STEPS),
            lambda: integrate_with_map_coordinates(v),
            peer_name="jax map_coordinates",
            repeats=repeats,
        ),
        harness.compare(
            f"warp 3-channel {size}",
            lambda: warp(v, v),
            grid_sample,
            peer_name="torch grid_sample",
            repeats=repeats,
        ),
    ]


if __name__ == "__main__":
    harness.main("svf")
