"""The real Left Atrium data (2018 challenge, UA-MT preprocessing), when it is at hand.

Set ``JAXSEG_LA_ROOT`` to the folder that holds the case folders (``<root>/<id>/mri_norm2.h5``,
the ``data/2018LA_Seg_Training Set`` folder of the UA-MT repository); without it every test
here is skipped. CI has no copy of the data.
"""

import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_inference import reference_sliding_window

from jaxseg.cli import main
from jaxseg.data import la_split, load_la_case
from jaxseg.inference import sliding_window

ROOT = os.environ.get("JAXSEG_LA_ROOT", "")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ROOT or not Path(ROOT).is_dir(),
        reason="JAXSEG_LA_ROOT does not name the LA data folder (<root>/<id>/mri_norm2.h5)",
    ),
]

# The papers' window; their stride is used whole in the x-y plane and doubled in z to keep the
# reference loop under a minute (the window placement code is the same for any stride).
PATCH, STRIDE = (112, 112, 80), (18, 18, 8)


def _position_network(rng):
    """A cheap 'network' whose output depends on where a voxel lies in its window: a patch-shaped
    bias and a scale, then a sigmoid. Batched JAX form and one-patch numpy form."""
    bias = rng.normal(size=(*PATCH, 1)).astype(np.float32)

    def jax_fn(x):
        return jax.nn.sigmoid(0.5 * x + bias[None])

    def numpy_fn(x):
        return 1 / (1 + np.exp(-(0.5 * x.astype(np.float64) + bias)))

    return jax_fn, numpy_fn


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_sliding_window_on_a_whole_real_volume(which):
    """The sliding window over a whole real test volume (148-244 x 132-160 x 88 voxels) equals
    the papers' loop-by-loop procedure."""
    ids = la_split("test")
    shapes = {i: load_la_case(ROOT, i).spatial_shape for i in ids}
    pick = (max if which == "largest" else min)(ids, key=lambda i: math.prod(shapes[i]))
    case = load_la_case(ROOT, pick)
    jax_fn, numpy_fn = _position_network(np.random.default_rng(0))
    got = sliding_window(jax_fn, jnp.asarray(case.image), patch=PATCH, stride=STRIDE, batch_size=4)
    want = reference_sliding_window(numpy_fn, case.image, PATCH, STRIDE)
    assert got.shape == (*case.spatial_shape, 1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


# A few steps of each method in the ``cpu`` setting on the real cases, then the evaluation of
# one real test case on its own 0.625 mm grid; a 4-filter V-Net keeps it to a minute or so.
FEW_STEPS = [
    "train.steps=2",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.log_every=1",
    "model.n_filters=4",
    "data.test=1",
    "eval.num_figures=1",
]


@pytest.mark.parametrize("method", ["supervised", "sassnet", "dtml"])
def test_few_steps_and_one_real_test_case(method, tmp_path):
    workdir = tmp_path / method
    args = ["train", f"{method}:cpu", "--workdir", str(workdir), "--no-progress"]
    for item in [f"data.root={ROOT}", *FEW_STEPS]:
        args += ["--set", item]
    assert main(args) == 0

    split = json.loads((workdir / "split.json").read_text())
    train_ids = la_split("train")
    assert split["labelled"] == train_ids[:8] and split["val"] == train_ids[-8:]
    assert split["unlabelled"] == ([] if method == "supervised" else train_ids[8:-8])
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)

    result = json.loads((workdir / "eval" / "metrics.json").read_text())
    test_id = la_split("test")[0]
    case = load_la_case(ROOT, test_id)
    assert [c["id"] for c in result["cases"]] == [test_id]
    assert result["protocol"]["network_spacing"] == [1.5, 1.5, 1.5]
    record = result["cases"][0]
    assert 0.0 <= record["dice"] <= 1.0
    # Scored on the case's own 0.625 mm grid: voxel distances are mm / 0.625.
    assert case.spacing == pytest.approx((0.625,) * 3)
    for name in ("hd95", "asd"):
        if record[name] is not None:  # null: an empty prediction after two steps
            assert record[f"{name}_voxels"] == pytest.approx(record[name] / 0.625, rel=1e-6)
