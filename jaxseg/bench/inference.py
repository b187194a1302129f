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

Peer: MONAI's ``sliding_window_inference`` (``mode="constant"``, the uniform average; windows
run 4 at a time) with the same network and weights in PyTorch (the reference V-Net of the
checkout's ``tests/torch_reference.py``, imported into jaxseg), on the same GPU when there is
one, in a fresh process of its own as well. MONAI places windows by an overlap fraction:
``interval = int(roi * (1 - overlap))`` per axis, then starts ``i * interval`` with the last
moved back to end flush with the volume, which is jaxseg's rule
(:func:`jaxseg.inference.window_starts`); the overlap ``1 - (stride + 0.5) / patch`` gives
exactly jaxseg's stride, so both sides average the same windows. Each side writes its result
to a temporary file and the row records the largest difference (``max_abs_diff``) beside the
ratio; the peer's own peak memory is ``peer_device_bytes`` (PyTorch's
``max_memory_allocated``) and ``peer_host_rss_bytes``. Without PyTorch, MONAI or the checkout's
helpers the rows have no peer and jaxseg uses a seeded initialisation.

``--quick``: one timed call after the warm-up instead of 3.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxseg.bench import harness, nets
from jaxseg.inference import window_starts
from jaxseg.methods import _vnet, supervised
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


def _peer_available() -> bool:
    return importlib.util.find_spec("monai") is not None and nets.reference_torch() is not None


def _reference_vnet(n_filters: int):
    """``(torch, the reference V-Net in evaluation mode on the peer's device)``, seeded."""
    torch, torch_reference = nets.reference_torch()
    torch.manual_seed(0)
    net = torch_reference.VNet(n_filters=n_filters).eval()
    return torch, net.to(nets.torch_device(torch))


def _volume(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((*shape, 1), dtype=np.float32)


def _save(path: str | None, result: Any) -> None:
    if path is not None:
        np.save(path, np.asarray(result, np.float32).reshape(-1))


def row(name: str, quick: bool = False, save: str | None = None) -> dict[str, Any]:
    """The row of volume ``name`` (a key of :data:`VOLUMES`), measured in this process (with
    the reference V-Net's weights when the peer can run); the result is saved to ``save``."""
    shape, stride = VOLUMES[name]
    config = supervised.default_config("paper")
    config.data.patch = PATCH
    config.model.n_filters = _filters(name)
    with jax.threefry_partitionable(False):
        state = jax.jit(functools.partial(supervised.create_state, config))(jax.random.key(0))
    if _peer_available():
        _, reference = _reference_vnet(config.model.n_filters)
        variables = nets.imported("vnet", reference, into=_vnet.vnet(config))
        state = nets.with_weights(state, {"seg": variables})
        del reference
    apply_fn = OutputFn(supervised.predict, config)
    window = {"patch": PATCH, "stride": stride, "batch_size": BATCH, "blend": "mean"}
    volume = jax.device_put(_volume(shape))

    def run():
        return predict_volume(apply_fn, state.nets, volume, **window)

    timing = harness.measure(run, warmup=1, repeats=1 if quick else 3)
    _save(save, run())
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


def peer_row(name: str, quick: bool = False, save: str | None = None) -> dict[str, Any]:
    """MONAI's ``sliding_window_inference`` of volume ``name`` with the reference V-Net (the
    module docstring), measured in this process; the result is saved to ``save``."""
    from monai.inferers import sliding_window_inference

    shape, stride = VOLUMES[name]
    torch, net = _reference_vnet(_filters(name))
    device = nets.torch_device(torch)
    volume = nets.channels_first(torch, _volume(shape)[None])
    overlap = [1.0 - (t + 0.5) / p for t, p in zip(stride, PATCH)]

    def predictor(windows):
        return torch.sigmoid(net(windows)["seg"])

    def run():
        with torch.no_grad():
            out = sliding_window_inference(volume, PATCH, BATCH, predictor, overlap=overlap)
        nets.synchronize(torch)
        return out

    timing = harness.measure(run, warmup=1, repeats=1 if quick else 3)
    _save(save, run().cpu().numpy())
    cuda = device == "cuda"
    return {
        "peer_timing": timing,
        "peer_device_bytes": int(torch.cuda.max_memory_allocated()) if cuda else None,
        "peer_host_rss_bytes": harness.peak_memory()["host_rss_bytes"],
    }


def _child(name: str, quick: bool, side: str, save: str) -> dict[str, Any]:
    """:func:`row` (``side`` "ours") or :func:`peer_row` ("monai") in a new Python process
    (same environment), for its own peak memory."""
    argv = [sys.executable, "-m", "jaxseg.bench.inference", "--child", name, side, save]
    done = subprocess.run(argv + (["--quick"] if quick else []), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {name} row ({side}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def row_in_fresh_process(name: str, quick: bool = False) -> dict[str, Any]:
    """The row of volume ``name``: jaxseg and (when it can run) MONAI, each in a new process,
    with their ratio and largest difference."""
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours.npy"
        result = _child(name, quick, "ours", str(ours))
        if not _peer_available():
            return result
        peer = Path(tmp) / "monai.npy"
        result.update(_child(name, quick, "monai", str(peer)), peer="monai")
        diff = np.abs(np.load(ours, mmap_mode="r") - np.load(peer, mmap_mode="r"))
        result["max_abs_diff"] = float(diff.max())
    result["speedup"] = result["peer_timing"]["median_s"] / result["ours"]["median_s"]
    return result


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [row_in_fresh_process(name, quick) for name in VOLUMES]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        name, side, save = sys.argv[2:5]
        measure = row if side == "ours" else peer_row
        print(json.dumps(json_safe(measure(name, quick="--quick" in sys.argv, save=save))))
    else:
        harness.main("inference")
