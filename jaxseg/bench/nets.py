"""Network training and inference steps: jaxseg's Flax V-Net and discriminator against PyTorch.

Both sides run the same networks with the same weights (the PyTorch reference networks of
``tests/torch_reference.py``, imported with :func:`jaxseg.interop.torch.import_state_dict`) on
the same inputs, channels last for JAX and channels first for PyTorch. Rows (for the record,
no targets; XLA's 3D convolutions on CPU are slower than PyTorch's oneDNN ones):

- ``vnet train step``: one SASSNet-style generator step of the V-Net: forward in training mode
  (batch statistics, channel dropout), Dice loss on ``sigmoid(seg)`` plus MSE on ``sdm``
  against fixed random targets, backward, SGD (lr 0.01, momentum 0.9, weight decay 1e-4)
  update. JAX: one jitted function with the training state donated; PyTorch: the same step
  with ``torch.optim.SGD``. At 2x112x112x80 (the SASSNet/DTML crop) and 2x64x64x64.
- ``vnet eval forward 1x112x112x80``: inference forward; the row records ``max_abs_diff``
  between the two sides' segmentation logits.
- ``discriminator fwd+bwd 4x112x112x80``: forward in training mode, cross-entropy on the two
  logits, gradients with respect to the parameters (no update).
- ``vnet train step 2x112x112x80 bfloat16`` (accelerators only): the JAX step with the V-Net
  computing in bfloat16 (float32 parameters, optimizer state and loss; the heads in float32)
  against the same PyTorch step in float32, the reference's numerics.

On a GPU, PyTorch runs on the same GPU when it sees one (``torch.cuda``), and the clock stops
after ``torch.cuda.synchronize()``.

JAX runs the networks with ``conv_impl="auto"`` (the sliced convolution forms of
:mod:`jaxseg.nn.layers` on CPU); on the CPU backend every row also times the direct ``lax``
convolutions (``conv_impl="lax"``) and records them as ``lax_timing`` with
``sliced_speedup`` = lax / auto. On other backends the two are the same computation.

PyTorch runs with ``harness.cpu_threads()`` threads. Its networks are the test helpers of the
repository's ``tests/torch_reference.py``, so the peer runs from a checkout with PyTorch
installed; otherwise JAX uses a seeded Flax initialisation and the rows have no peer.
``python -m jaxseg.bench.nets --jax-only [--quick] [--conv-impl IMPL] [--rows NAME ...]`` times
the JAX side alone and prints its rows as JSON, so that an XLA option can be measured in a fresh
process: ``XLA_FLAGS="--xla_cpu_..." python -m jaxseg.bench.nets --jax-only`` (XLA reads
``XLA_FLAGS`` once, when JAX starts its backend; an unknown flag aborts the process).

XLA CPU options
---------------
Measured with jax/jaxlib 0.10.2 on the 2-core machine of ``results/nets-cpu.json``, on the
``vnet train step 2x64x64x64`` row, each option in a fresh process, two interleaved rounds of
three timed steps after compilation. The machine was shared, so medians were unreliable; the
figures are the fastest of the six steps (default: 8.67 s). Options that leave the compiled HLO
identical to the default spread over 8.42-8.67 s, which is the noise floor (about 3 %).

==================================================================  ==========  =================
option                                                              fastest     effect
==================================================================  ==========  =================
(default)                                                           8.67 s      -
``--xla_cpu_use_thunk_runtime=false``                               8.55 s      none: deprecated,
                                                                                ignored with a
                                                                                warning
``--xla_cpu_multi_thread_eigen=false``                              8.62 s      none (still about
                                                                                2 cores of CPU
                                                                                time per step)
``--xla_cpu_enable_fast_math=true``                                 8.97 s      none
``--xla_cpu_prefer_vector_width=512``                               8.80 s      none
``--xla_cpu_use_onednn=true``                                       8.44 s      none: same HLO,
``--xla_cpu_experimental_onednn_custom_call=true``                              no oneDNN call
                                                                                is emitted
``--xla_cpu_experimental_ynn_fusion_type=+individual_convolution``  8.42 s      none: same HLO
``--xla_cpu_experimental_ynn_fusion_type=`` (YNNPACK off)           8.47 s      none
``--xla_cpu_use_xnnpack=false``                                     8.46 s      none: same HLO
``--xla_cpu_experimental_xnn_graph_fusion_mode=``                   8.66 s      none: same HLO
``XNN_GRAPH_FUSION_MODE_GREEDY``
``--xla_cpu_enable_concurrency_optimized_scheduler=false``          8.06 s      about 3 % in an
                                                                                A/B re-run
                                                                                (8.25-8.52 s vs
                                                                                8.39-8.78 s),
                                                                                within the noise
==================================================================  ==========  =================

``--xla_cpu_use_mkl_dnn`` no longer exists (XLA aborts on it); adding
``--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce`` to the oneDNN switches does not
change the HLO either. Fast math, the 512-bit vector width and turning YNNPACK off change the
results by rounding (the fifth step's loss by up to 1e-5); the others give bit-identical eval
outputs and losses.

None helps. The compiled HLO showed why: this jaxlib hands 2D convolutions to YNNPACK, but 3D
convolutions stay XLA convolutions run by Eigen's generic spatial convolution, and the weight
and input gradients of strided 3D convolutions are emitted as plain loops (a 3x3x3 16->16
convolution of 2x64^3 took 0.4-0.8 s forward against 0.06-0.08 s in PyTorch; the discriminator's
training-mode forward 1.75 s at 4x112x112x80, its gradients the other ~54 s of the row).

So ``jaxseg.nn.layers`` can compute the same functions differently (``conv_impl="sliced"``,
the default ``"auto"`` on CPU): a stride-1 3D convolution as a sum of 2D convolutions over
shifted slices, a strided one (kernel a multiple of the stride) as a stride-1 convolution of the
space-to-depth rearrangement, and the kernel = stride transposed convolution as one matrix
product. The rows measure that default against the direct ``lax`` convolutions;
``benchmarks/results/nets-cpu.json`` in the repository has the figures.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseg.bench import harness
from jaxseg.interop.torch import import_state_dict
from jaxseg.nn import Discriminator3D, VNet
from jaxseg.nn.layers import CONV_IMPLS

PEER_NAME = "pytorch"
#: The test helpers of a checkout (the PyTorch reference networks and training steps).
TESTS = Path(__file__).resolve().parents[2] / "tests"
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4
# name -> (kind, input shape (B, *S, C), channels last)
ROWS: dict[str, tuple[str, tuple[int, ...]]] = {
    "vnet train step 2x112x112x80": ("vnet_train", (2, 112, 112, 80, 1)),
    "vnet train step 2x64x64x64": ("vnet_train", (2, 64, 64, 64, 1)),
    "vnet eval forward 1x112x112x80": ("vnet_eval", (1, 112, 112, 80, 1)),
    "discriminator fwd+bwd 4x112x112x80": ("disc_grad", (4, 112, 112, 80, 1)),
    "vnet train step 2x112x112x80 bfloat16": ("vnet_train_bf16", (2, 112, 112, 80, 1)),
}
#: Rows run on accelerators only (bfloat16 convolutions are emulated, and slow, on CPU).
ACCELERATOR_ROWS = ("vnet train step 2x112x112x80 bfloat16",)


def _repeats(shape: tuple[int, ...], quick: bool) -> dict[str, int]:
    big = np.prod(shape) >= 112 * 112 * 80
    if quick:
        return {"warmup": 1, "repeats": 1 if big else 2}
    return {"warmup": 1, "repeats": 3} if big else {"warmup": 2, "repeats": 5}


def _inputs(shape: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """Image, binary segmentation target and SDM target in [-1, 1], channels last, float32."""
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=shape).astype(np.float32),
        "seg": (rng.random(shape) < 0.3).astype(np.float32),
        "sdm": rng.uniform(-1.0, 1.0, size=shape).astype(np.float32),
    }


def _test_helper(tests: Path, name: str) -> Any:
    """The module ``tests/<name>.py`` of the checkout, imported under its own name (the
    helpers import each other by top-level name)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, tests / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def reference_torch():
    """The torch module and the reference networks of the checkout's
    ``tests/torch_reference.py``, or None when torch is missing or jaxseg does not run from a
    checkout."""
    try:
        import torch
    except ImportError:
        return None
    if not (TESTS / "torch_reference.py").is_file():
        return None
    _test_helper(TESTS, "reference_names")
    torch_reference = _test_helper(TESTS, "torch_reference")
    torch.set_num_threads(harness.cpu_threads())
    return torch, torch_reference


def reference_steps():
    """``(torch, torch_reference, torch_steps)``: with :func:`reference_torch`'s modules the
    checkout's ``tests/torch_steps.py`` (the released SASSNet and DTML training iterations), or
    None."""
    found = reference_torch()
    if found is None or not (TESTS / "torch_steps.py").is_file():
        return None
    return (*found, _test_helper(TESTS, "torch_steps"))


def torch_device(torch) -> str:
    """Where PyTorch runs: the GPU when JAX runs on one and PyTorch sees it, else the CPU."""
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def synchronize(torch) -> None:
    if torch_device(torch) == "cuda":
        torch.cuda.synchronize()


def _flax_module(name: str, conv_impl: str, dtype: Any = None) -> Any:
    """The jaxseg network ``name`` ("vnet" or "discriminator3d") computing with ``conv_impl``
    in ``dtype`` (None: the parameters' float32)."""
    if name == "vnet":
        return VNet(conv_impl=conv_impl, dtype=dtype)
    return Discriminator3D(conv_impl=conv_impl, dtype=dtype)


def imported(name: str, module: Any, into: Any = None) -> dict[str, Any]:
    """The weights of the PyTorch reference network ``module`` (jaxseg's name ``name``) as Flax
    variables, of ``into`` when its widths are not the default ones (see
    :func:`jaxseg.interop.torch.import_state_dict`)."""
    weights = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    return import_state_dict(name, weights, module=into)


def with_weights(state: Any, variables: dict[str, Any]) -> Any:
    """A method's ``state`` whose networks named in ``variables`` start from those Flax
    variables (their optimizer states stay fresh)."""
    replaced = {
        net: state.nets[net].replace(
            params=jax.device_put(value["params"]),
            batch_stats=jax.device_put(value.get("batch_stats", {})),
        )
        for net, value in variables.items()
    }
    return state.replace(nets={**state.nets, **replaced})


def _variables(name: str, module: Any, shapes: list[tuple[int, ...]]) -> dict[str, Any]:
    """The reference network's weights as Flax variables, or a seeded Flax init without it."""
    if module is not None:
        return imported(name, module)
    flax_module = _flax_module(name, "auto")
    inputs = [jnp.zeros((1, 16, 16, 16, s[-1])) for s in shapes]
    return flax_module.init(jax.random.key(0), *inputs, train=False)


# ------------------------------------------------------------------------------- JAX side


def dice_loss(score: jax.Array, target: jax.Array) -> jax.Array:
    """SASSNet's soft Dice loss (smooth 1e-5, squared sums in the denominator)."""
    smooth = 1e-5
    intersect = jnp.sum(score * target)
    return 1 - (2 * intersect + smooth) / (jnp.sum(score**2) + jnp.sum(target**2) + smooth)


def _jax_vnet_train(
    variables: dict[str, Any], data: dict[str, np.ndarray], conv_impl: str, dtype: Any = None
) -> Callable[[], Any]:
    model = _flax_module("vnet", conv_impl, dtype)
    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(LR, momentum=MOMENTUM))
    image, seg, sdm = (jnp.asarray(data[k]) for k in ("image", "seg", "sdm"))

    def loss_fn(params, batch_stats, key):
        out, mutated = model.apply(
            {"params": params, "batch_stats": batch_stats},
            image,
            train=True,
            rngs={"dropout": key},
            mutable=["batch_stats"],
        )
        loss = dice_loss(jax.nn.sigmoid(out["seg"]), seg) + jnp.mean((out["sdm"] - sdm) ** 2)
        return loss, mutated["batch_stats"]

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state):
        params, batch_stats, opt_state, key = state
        key, sub = jax.random.split(key)
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, sub
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, batch_stats, opt_state, key), loss

    params = jax.tree.map(jnp.array, variables["params"])
    batch_stats = jax.tree.map(jnp.array, variables["batch_stats"])
    holder = [(params, batch_stats, tx.init(params), jax.random.key(1))]

    def run():
        holder[0], loss = step(holder[0])
        return holder[0], loss

    return run


def _jax_vnet_eval(
    variables: dict[str, Any], data: dict[str, np.ndarray], conv_impl: str
) -> Callable[[], Any]:
    model = _flax_module("vnet", conv_impl)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    image = jnp.asarray(data["image"])
    return lambda: forward(variables, image)


def _jax_disc_grad(
    variables: dict[str, Any], data: dict[str, np.ndarray], conv_impl: str
) -> Callable[[], Any]:
    model = _flax_module("discriminator3d", conv_impl)
    sdm, image = jnp.asarray(data["sdm"]), jnp.asarray(data["image"])
    batch = image.shape[0]
    labels = jnp.arange(batch) < batch // 2

    def loss_fn(params, key):
        logits = model.apply({"params": params}, sdm, image, train=True, rngs={"dropout": key})
        return optax.softmax_cross_entropy_with_integer_labels(
            logits["logits"], labels.astype(jnp.int32)
        ).mean()

    grad = jax.jit(jax.grad(loss_fn))
    key = jax.random.key(1)
    return lambda: grad(variables["params"], key)


_JAX = {
    "vnet_train": _jax_vnet_train,
    "vnet_train_bf16": functools.partial(_jax_vnet_train, dtype=jnp.bfloat16),
    "vnet_eval": _jax_vnet_eval,
    "disc_grad": _jax_disc_grad,
}


# --------------------------------------------------------------------------- PyTorch side


def channels_first(torch, a: np.ndarray):
    array = torch.from_numpy(np.array(np.moveaxis(a, -1, 1), order="C"))  # a writable copy
    return array.to(torch_device(torch))


def _torch_vnet_train(torch, net, data) -> Callable[[], Any]:
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    image, seg, sdm = (channels_first(torch, data[k]) for k in ("image", "seg", "sdm"))

    def dice(score, target):
        smooth = 1e-5
        intersect = torch.sum(score * target)
        return 1 - (2 * intersect + smooth) / (
            torch.sum(score * score) + torch.sum(target * target) + smooth
        )

    def run():
        opt.zero_grad(set_to_none=True)
        out = net(image)
        loss = dice(torch.sigmoid(out["seg"]), seg) + torch.nn.functional.mse_loss(out["sdm"], sdm)
        loss.backward()
        opt.step()
        return loss.item()

    return run


def _torch_vnet_eval(torch, net, data) -> Callable[[], Any]:
    net.eval()
    image = channels_first(torch, data["image"])

    def run():
        with torch.no_grad():
            out = net(image)
        synchronize(torch)
        return out

    return run


def _torch_disc_grad(torch, net, data) -> Callable[[], Any]:
    net.train()
    sdm, image = channels_first(torch, data["sdm"]), channels_first(torch, data["image"])
    batch = image.shape[0]
    labels = (torch.arange(batch) < batch // 2).long()

    def run():
        net.zero_grad(set_to_none=True)
        logits = net(sdm, image)["logits"]
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        return loss.item()

    return run


_TORCH = {
    "vnet_train": _torch_vnet_train,
    "vnet_train_bf16": _torch_vnet_train,  # PyTorch in float32, the reference's numerics
    "vnet_eval": _torch_vnet_eval,
    "disc_grad": _torch_disc_grad,
}


# ------------------------------------------------------------------------------------ rows


def _setup(name: str, *, with_peer: bool, conv_impl: str = "auto"):
    """``(ours, peer or None, extra fields, variables)`` for row ``name``, ours computing
    convolutions as ``conv_impl``."""
    kind, shape = ROWS[name]
    data = _inputs(shape)
    ref = reference_torch() if with_peer else None
    network = "discriminator3d" if kind == "disc_grad" else "vnet"
    module = None
    if ref is not None:
        torch, torch_reference = ref
        torch.manual_seed(0)
        module = torch_reference.build(network).to(torch_device(torch))
    n_inputs = 2 if network == "discriminator3d" else 1
    variables = _variables(network, module, [shape] * n_inputs)
    ours = _JAX[kind](variables, data, conv_impl)
    peer = None if ref is None else _TORCH[kind](ref[0], module, data)
    extra: dict[str, Any] = {"input_shape": list(shape), "conv_impl": conv_impl}
    if kind == "vnet_eval" and peer is not None:
        seg_ours = np.asarray(ours()["seg"])
        seg_peer = np.moveaxis(peer()["seg"].cpu().numpy(), 1, -1)
        extra["max_abs_diff"] = float(np.max(np.abs(seg_ours - seg_peer)))
    return ours, peer, extra, variables


def run(quick: bool = False) -> list[dict]:
    """Every row of :data:`ROWS` against PyTorch; on CPU also with the ``lax`` convolutions."""
    rows = []
    on_cpu = jax.default_backend() == "cpu"
    for name in ROWS:
        if on_cpu and name in ACCELERATOR_ROWS:
            continue
        timing = _repeats(ROWS[name][1], quick)
        ours, peer, extra, variables = _setup(name, with_peer=True)
        row = harness.compare(name, ours, peer, peer_name=PEER_NAME, **timing, **extra)
        del ours, peer
        if on_cpu:
            kind, shape = ROWS[name]
            lax_form = _JAX[kind](variables, _inputs(shape), "lax")
            row["lax_timing"] = harness.measure(lax_form, **timing)
            row["sliced_speedup"] = row["lax_timing"]["median_s"] / row["ours"]["median_s"]
            del lax_form
        rows.append(row)
    return rows


def jax_only(
    names: list[str] | None = None, *, quick: bool = False, conv_impl: str = "auto"
) -> list[dict]:
    """The JAX side of rows ``names`` (all by default) computing convolutions as ``conv_impl``,
    timed alone in this process."""
    rows = []
    for name in names or list(ROWS):
        ours, _, extra, _ = _setup(name, with_peer=False, conv_impl=conv_impl)
        timing = harness.measure(ours, **_repeats(ROWS[name][1], quick))
        rows.append({"name": name, **extra, "ours": timing})
        del ours
    return rows


def _jax_only_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m jaxseg.bench.nets --jax-only")
    parser.add_argument("--jax-only", action="store_true", required=True)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--conv-impl", choices=CONV_IMPLS, default="auto", help="default: auto")
    parser.add_argument("--rows", nargs="*", choices=list(ROWS), help="rows (default: all)")
    args = parser.parse_args(argv)
    print(json.dumps(jax_only(args.rows, quick=args.quick, conv_impl=args.conv_impl)))


if __name__ == "__main__":
    if "--jax-only" in sys.argv[1:]:
        _jax_only_main(sys.argv[1:])
    else:
        harness.main("nets")
