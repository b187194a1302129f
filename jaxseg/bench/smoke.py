"""A few rows of the other suites at tiny sizes: seconds on 2 CPU cores, for tests and a check
that the harness works on a machine (timing, peers, JSON and Markdown output).

Rows (no targets: at these sizes fixed costs dominate and the ratios mean little):

* ``sdm 2x16x16x16``: :mod:`jaxseg.bench.sdm`'s jitted SDM against the reference
  ``compute_sdf`` (scipy + skimage) when skimage is installed;
* ``hd95+asd 24x24x24``: :mod:`jaxseg.bench.metrics`' row against medpy when installed (the
  values are checked equal first);
* ``integrate_svf 7 steps 16x16x16``: against its ``map_coordinates`` form of
  :mod:`jaxseg.bench.svf`;
* ``supervised iteration 2x16x16x16 (smoke)``: one training iteration of the supervised V-Net in
  its ``smoke`` config (4 filters) at a 16^3 patch, as :mod:`jaxseg.bench.methods` times them.

``quick`` takes one repeat fewer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.bench import harness, methods, metrics, sdm, svf
from jaxseg.demo import smooth_velocity
from jaxseg.geometry import integrate_svf
from jaxseg.shape import signed_distance_map

SIZE = 16


def run(quick: bool = False) -> list[dict]:
    timing = {"warmup": 1, "repeats": 2 if quick else 3}
    masks = sdm.atrium_like_masks((2, SIZE, SIZE, SIZE))
    batched = jax.jit(jax.vmap(signed_distance_map))
    peer_sdm = (lambda: sdm.reference_sdm(masks)) if sdm.has_skimage() else None
    velocity = jnp.asarray(
        smooth_velocity((SIZE,) * 3, amplitude=2.0, sigma=3.0, rng=np.random.default_rng(0))
    )
    cube = "x".join([str(SIZE)] * 3)
    return [
        harness.compare(
            f"sdm 2x{cube}",
            lambda: batched(masks),
            peer_sdm,
            peer_name=sdm.PEER_NAME,
            **timing,
        ),
        metrics.metric_row(
            "hd95+asd 24x24x24",
            *metrics.organ_pair((24, 24, 24), 2_000, seed=0),
            (1.0,) * 3,
            ("hd95", "asd"),
            target=None,
            **timing,
        ),
        harness.compare(
            f"integrate_svf {svf.STEPS} steps {cube}",
            lambda: integrate_svf(velocity, steps=svf.STEPS),
            lambda: svf.integrate_with_map_coordinates(velocity),
            peer_name="jax map_coordinates",
            **timing,
        ),
        methods.train_step_row("supervised", "smoke", (SIZE,) * 3, **timing),
    ]


if __name__ == "__main__":
    harness.main("smoke")
