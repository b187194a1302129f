"""How the cost of the pure functions grows with the volume: each at three sizes, against its
peer where one is installed, with a log-log plot (``scaling-<platform>.png``) beside the table.

Functions, each on cubes of 32^3, 64^3 and 128^3 voxels (``--quick``: 16^3, 32^3, 64^3):

* ``copy``: ``2 * x`` of a 3-channel float32 field, the memory-bandwidth yardstick: it reads and
  writes every byte once, ``bytes_moved = 2 * 12 N`` for ``N`` voxels, and its
  ``bandwidth_gbs`` is what this device sustains;
* ``warp``: one linear :func:`jaxseg.geometry.warp` of a 3-channel field by a 3-channel
  displacement (peer: ``torch.nn.functional.grid_sample``). It must at least read the
  displacement and the field and write the result: ``bytes_moved = 36 N``;
* ``integrate_svf``: scaling and squaring in 7 steps (peer: MONAI ``DVF2DDF``); each step reads
  the displacement (both where to sample and what) and writes it: ``bytes_moved = 7 * 24 N``;
* ``signed_distance_map`` of one atrium-like mask (peer: the SASSNet/DTML ``compute_sdf``);
* ``hd95 + asd`` of an organ pair with 5 % foreground (peer: medpy, values checked equal).

For ``warp`` and ``integrate_svf`` each row gives ``bandwidth_ratio``: the measured time over the
time ``bytes_moved`` takes at the ``copy`` bandwidth of the same size, the factor by which the
function stays above the memory-bandwidth limit (the issue's target on an accelerator: 5).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.bench import harness, metrics, sdm, svf
from jaxseg.demo import smooth_velocity
from jaxseg.geometry import integrate_svf, warp
from jaxseg.shape import signed_distance_map

SIZES = (32, 64, 128)
QUICK_SIZES = (16, 32, 64)

#: Bytes per voxel each function must move at least (float32, 3-channel fields).
BYTES_PER_VOXEL = {"copy": 2 * 12, "warp": 36, "integrate_svf": svf.STEPS * 24}


def _row(function: str, n: int, row: dict[str, Any]) -> dict[str, Any]:
    voxels = n**3
    row.update(function=function, voxels=voxels, size=[n] * 3)
    if function in BYTES_PER_VOXEL:
        row["bytes_moved"] = BYTES_PER_VOXEL[function] * voxels
    return row


def rows_at(n: int, timing: dict[str, int]) -> list[dict[str, Any]]:
    """The rows of every function on an ``n^3`` volume."""
    cube = "x".join([str(n)] * 3)
    velocity = smooth_velocity((n,) * 3, amplitude=3.0, sigma=n / 16, rng=np.random.default_rng(0))
    v = jnp.asarray(velocity)
    monai, grid_sample = svf._torch_peers(velocity)
    double = jax.jit(lambda x: 2 * x)
    mask = sdm.atrium_like_masks((1, n, n, n))
    sdm_jit = jax.jit(jax.vmap(signed_distance_map))
    pred, ref = metrics.organ_pair((n,) * 3, n**3 // 20, seed=0)
    peer_sdm = (lambda: sdm.reference_sdm(mask)) if sdm.has_skimage() else None
    timed = [
        ("copy", f"copy 3-channel {cube}", lambda: double(v), None, "-"),
        ("warp", f"warp 3-channel {cube}", lambda: warp(v, v), grid_sample,
         "torch grid_sample"),
        ("integrate_svf", f"integrate_svf {svf.STEPS} steps {cube}",
         lambda: integrate_svf(v, steps=svf.STEPS), monai, "monai DVF2DDF"),
        ("signed_distance_map", f"sdm {cube}", lambda: sdm_jit(mask), peer_sdm, sdm.PEER_NAME),
    ]  # fmt: skip
    rows = [
        _row(function, n, harness.compare(name, ours, peer, peer_name=peer_name, **timing))
        for function, name, ours, peer, peer_name in timed
    ]
    both = ("hd95", "asd")
    row = metrics.metric_row(f"hd95+asd {cube}", pred, ref, (1.0,) * 3, both, target=None, **timing)
    rows.append(_row("hd95+asd", n, row))
    copy = rows[0]
    copy["bandwidth_gbs"] = copy["bytes_moved"] / copy["ours"]["median_s"] / 1e9
    for row in rows[1:3]:
        at_bandwidth = row["bytes_moved"] / (copy["bandwidth_gbs"] * 1e9)
        row["bandwidth_ratio"] = row["ours"]["median_s"] / at_bandwidth
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    timing = {"warmup": 1, "repeats": 3} if quick else {"warmup": 2, "repeats": 5}
    return [row for n in (QUICK_SIZES if quick else SIZES) for row in rows_at(n, timing)]


if __name__ == "__main__":
    harness.main("scaling")
