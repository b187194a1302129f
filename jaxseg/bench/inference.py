"""Sliding-window inference of whole volumes: time and peak memory, each row in a fresh process.

Rows (the V-Net of the LA papers, 16 filters, in evaluation mode, windows of 112x112x80 run 4 at a
time, through :func:`jaxseg.train.evaluate.predict_volume` as ``jaxseg evaluate`` and
``predict`` run it, the result brought to the host):

* ``LA``: a volume of 192x144x88 voxels (the real LA cases span 148-244 x 132-160 x 88), the
  papers' stride of 18x18x4: 54 windows;
* ``CT``: a 512x512x300 volume (an abdominal CT at its native grid), nnU-Net's stride of half a
  window: 567 windows. On the CPU backend this row runs a 2-filter V-Net, so that it finishes in
  minutes: the memory of the accumulators does not depend on the network's width, its time does.

Peak memory is the reason for the fresh process: the accelerator's ``peak_bytes_in_use`` and the
process's peak RSS are maxima over a process's life, so each row is run alone
(``python -m jaxseg.bench.inference --child NAME``) and reports its own. Beside them each row
gives ``volume_bytes`` (the float32 input) and ``accumulator_bytes`` (the float32 running sum of
the padded volume, one channel per output class): the sum is the only array of the volume's size
the window loop keeps besides its input, and the result is one more (the sum divided by the
separable window count). On an accelerator, run the suite with
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` so that a child finds the memory its parent does not use.

``--quick``: one timed call after the warm-up instead of 3.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from typing import Any

import jax
import numpy as np

from jaxseg.bench import harness
from jaxseg.inference import window_starts
from jaxseg.methods import supervised
from jaxseg.train.evaluate import OutputFn, json_safe, predict_volume

PATCH = (112, 112, 80)
BATCH = 4
#: name -> (volume shape, stride)
VOLUMES = {
    "LA": ((192, 144, 88), (18, 18, 4)),
    "CT": ((512, 512, 300), (56, 56, 40)),
}


def _filters(name: str) -> int:
    return 2 if name == "CT" and jax.devices()[0].platform == "cpu" else 16


def row(name: str, quick: bool = False) -> dict[str, Any]:
    """The row of volume ``name`` (a key of :data:`VOLUMES`), measured in this process."""
    shape, stride = VOLUMES[name]
    config = supervised.default_config("paper")
    config.data.patch = PATCH
    config.model.n_filters = _filters(name)
    with jax.threefry_partitionable(False):
        state = jax.jit(functools.partial(supervised.create_state, config))(jax.random.key(0))
    apply_fn = OutputFn(supervised.predict, config)
    window = {"patch": PATCH, "stride": stride, "batch_size": BATCH, "blend": "mean"}
    rng = np.random.default_rng(0)
    volume = jax.device_put(rng.standard_normal((*shape, 1), dtype=np.float32))

    def run():
        return predict_volume(apply_fn, state.nets, volume, **window)

    timing = harness.measure(run, warmup=1, repeats=1 if quick else 3)
    windows = int(np.prod([len(window_starts(n, p, t)) for n, p, t in zip(shape, PATCH, stride)]))
    voxels = int(np.prod(shape))
    padded = int(np.prod([max(n, p) for n, p in zip(shape, PATCH)]))
    return {
        "name": f"sliding window {name} {'x'.join(map(str, shape))}, "
        f"V-Net {config.model.n_filters} filters, stride {'x'.join(map(str, stride))}",
        "peer": None,
        "volume": name,
        "shape": list(shape),
        "stride": list(stride),
        "windows": windows,
        "n_filters": config.model.n_filters,
        "ours": timing,
        "seconds_per_window": timing["median_s"] / windows,
        "volume_bytes": 4 * voxels,
        "accumulator_bytes": 4 * padded,
        **harness.peak_memory(),
    }


def row_in_fresh_process(name: str, quick: bool = False) -> dict[str, Any]:
    """:func:`row` run by a new Python process (same environment), for its own peak memory."""
    argv = [sys.executable, "-m", "jaxseg.bench.inference", "--child", name]
    done = subprocess.run(argv + (["--quick"] if quick else []), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {name} row failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [row_in_fresh_process(name, quick) for name in VOLUMES]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(json_safe(row(sys.argv[2], quick="--quick" in sys.argv))))
    else:
        harness.main("inference")
