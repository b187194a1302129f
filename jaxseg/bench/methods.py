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
warm-up, iterations per second, and the peak memory so far (:func:`harness.peak_memory`).

Peers: the iterations of the released PyTorch training scripts, SASSNet's
``train_gan_sdfloss.py`` and DTML's ``train_la_dtml.py`` (:data:`PEERS`, the reference steps of
the checkout's ``tests/torch_steps.py``, which the parity tests hold equal to jaxseg's steps to
1e-9 in float64), on the same batch and, on a GPU, the same GPU; the data loading of the scripts
is left out on both sides, the SDM targets of SASSNet's reference are computed with scipy on
the host as in the script. Both sides start from the same weights (the reference networks',
imported). The bfloat16 row is compared with the reference in float32, its numerics. On an
accelerator the target is a speed-up of at least 1 (the issue's "at least as fast as the
PyTorch step in float32, faster in bfloat16"); on the CPU the rows are for the record (XLA's 3D
convolutions on CPU are slower than PyTorch's, see the ``nets`` suite). The supervised baseline
and STIPPLE have no released script to compare with; the ``nets`` suite compares the V-Net step.

``--quick`` uses the same sizes but fewer repeats.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxseg.bench import harness, nets
from jaxseg.methods import dtml, sassnet, stipple, supervised

METHODS = {"supervised": supervised, "sassnet": sassnet, "dtml": dtml, "stipple": stipple}
#: method -> (the reference step class of ``tests/torch_steps.py``, its networks in order:
#: jaxseg's network name and the reference network's name)
PEERS = {
    "sassnet": ("SASSNetSteps", (("seg", "vnet"), ("disc", "discriminator3d"))),
    "dtml": ("DTMLSteps", (("seg", "vnet"), ("sdm", "vnet"))),
}

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


def reference_peer(
    name: str, inputs: dict[str, np.ndarray]
) -> tuple[Callable[[], Any], dict[str, Any]] | None:
    """``(iteration, weights)`` of the PyTorch reference of method ``name`` (:data:`PEERS`):
    ``iteration()`` runs one reference iteration on ``inputs`` (from :func:`batch`) and
    ``weights`` maps jaxseg's network names to the reference networks' initial weights as Flax
    variables; None without PyTorch, outside a checkout, or for a method without reference."""
    found = nets.reference_steps() if name in PEERS else None
    if found is None:
        return None
    torch, torch_reference, torch_steps = found
    device = nets.torch_device(torch)
    builders = {"vnet": torch_reference.VNet, "discriminator3d": torch_reference.FC3DDiscriminator}
    torch.manual_seed(0)
    cls, networks = PEERS[name]
    modules = {net: builders[kind]().to(device) for net, kind in networks}
    weights = {net: nets.imported(kind, modules[net]) for net, kind in networks}
    labelled = int(np.sum(inputs["labelled"]))
    steps = getattr(torch_steps, cls)(*modules.values(), labelled_bs=labelled)
    image = nets.channels_first(torch, inputs["image"][..., :1])
    label = torch.from_numpy(np.array(inputs["label"])).to(device)
    return functools.partial(steps.step, image, label), weights  # .item() waits for the GPU


def train_step_row(
    name: str,
    setting: str = "paper",
    patch: tuple[int, ...] = PATCH,
    *,
    precision: str = "float32",
    warmup: int = 2,
    repeats: int = 5,
    with_peer: bool = False,
) -> dict:
    """The row of one training iteration of method ``name`` (a key of :data:`METHODS`) in its
    config ``setting`` and ``precision``, on 2 labelled (+ 2 unlabelled but for the supervised
    baseline) crops of ``patch`` voxels (STIPPLE: 3 + 3 slices of its config's patch); with
    ``with_peer``, against the PyTorch reference iteration (:func:`reference_peer`) when there
    is one, both from the reference's weights."""
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
    peer = reference_peer(name, jax.device_get(inputs)) if with_peer else None
    if peer is not None:
        state = nets.with_weights(state, peer[1])
    timing = harness.measure_train_step(
        method.make_train_step(config), state, inputs, warmup=warmup, repeats=repeats
    )
    del state
    items = int(inputs["image"].shape[0])
    size = "x".join(map(str, patch))
    row = {
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
    if peer is not None:
        add_peer(row, harness.measure(peer[0], warmup=warmup, repeats=repeats))
    return row


def add_peer(row: dict, peer_timing: dict) -> None:
    """Record the PyTorch reference's timing in ``row``: ratio, and the target on accelerators."""
    row.update(peer=nets.PEER_NAME, peer_timing=peer_timing)
    row["speedup"] = peer_timing["median_s"] / row["ours"]["median_s"]
    if jax.default_backend() != "cpu":
        row.update(target_speedup=1.0, meets_target=bool(row["speedup"] >= 1.0))


def run(quick: bool = False) -> list[dict]:
    """Every method in both precisions; the reference's timing (float32) measured once, beside
    the float32 row, and reused for the bfloat16 row. On the CPU backend the float32 rows of
    the V-Net methods only: bfloat16 convolutions are emulated there, and STIPPLE's 512x512
    iteration did not finish one warm-up in 10 minutes on 2 cores."""
    repeats = 3 if quick else 5
    on_cpu = jax.default_backend() == "cpu"
    rows = []
    for name in METHODS:
        if on_cpu and name == "stipple":
            continue
        rows.append(train_step_row(name, repeats=repeats, with_peer=True))
        if not on_cpu:
            rows.append(train_step_row(name, precision="bfloat16", repeats=repeats))
            if "peer_timing" in rows[-2]:
                add_peer(rows[-1], rows[-2]["peer_timing"])
    return rows


if __name__ == "__main__":
    harness.main("methods")
