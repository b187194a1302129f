"""Step-by-step parity of jaxseg's SASSNet and DTML training steps with the authors' scripts.

The reference is the PyTorch iteration of ``tests/torch_steps.py``, written after SASSNet's
``train_gan_sdfloss.py`` and DTML's ``train_la_dtml.py`` (their losses, network modes, order,
``compute_sdf`` targets and ``torch.optim`` optimizers). Both sides start from the same weights
(random PyTorch networks with randomised batch-norm running statistics, imported with
:func:`jaxseg.interop.torch.import_state_dict`) and see the same batches: 2 labelled + 2
unlabelled LA-like phantoms of 32^3 voxels (:func:`jaxseg.data.synthetic.la_like`), rotated in
the axial plane from step to step. The networks are small (V-Net and discriminator with 2
filters; the reference architectures take the width as an argument) and dropout is off on both
sides, so that the runs are deterministic and fast. Three consecutive steps of
``get_method(name).make_train_step(config)`` (jitted by :func:`jaxseg.train.jit_step`, keys
from :func:`jaxseg.train.step_key`) and of the reference are compared after every step: the
logged losses and weights, the parameters, and the batch-norm running statistics. The ramp-up
advances every iteration and the V-Net learning rate drops x0.1 after the 2nd, so that both
schedules change within the three steps.

Why float64. Losses agree to about 7 digits in float32, parameter updates do not: at a random
initialisation the Dice gradient through training-mode batch normalisation cancels most of
float32's digits and DTML's ``sigmoid(-1500 sdm)`` amplifies the rest, so the reference run in
float32 differs from itself in float64 by up to 1e-4 of the largest update of a V-Net in the
first step and by 20 % in DTML's SDM network after two (measured). Hence two checks:

(a) ``test_float64_parity``: jaxseg in float64 (state and batch cast to float64 under
    ``jax.enable_x64``) against the reference in float64 (``module.double()``). Before every
    step jaxseg's state is set to the reference's (parameters, running statistics, momentum and
    Adam moments; counters are jaxseg's own, which must agree), so that each step is compared
    from identical inputs and rounding differences do not compound over steps (they grow about
    100x per DTML step: the reference perturbed by 1e-16 drifts from itself by 2e-8 in two).
    Tolerances: the first step's logged values 1e-12 relative (identical inputs, a few dozen
    roundings: measured <= 1e-14); everything else 1e-9 relative (measured <= 2e-10, DTML's SDM
    network), parameters and running statistics measured as the largest elementwise deviation
    of the step's change relative to the largest change in the network. Any difference of
    method (a factor, a term on the wrong items, a mode, a schedule off by one step) changes
    these numbers by 1e-6 or far more.
(b) ``test_float32_within_reference_noise``: jaxseg in float32, three free-running steps as it
    trains, against the float64 reference: in each group of quantities its largest deviation is
    at most ``F32_FACTOR`` times the largest deviation of the reference's own float32 run,
    floored at ``F32_FLOOR`` (measured ratios <= 3.2; most are 1: the float32 rounding of the
    stored parameters, common to both, dominates).

Batch statistics. PyTorch updates the running variance with the unbiased batch variance, Flax
with the biased one (a relative difference of ``1/n`` for ``n`` voxels per channel; see
:mod:`jaxseg.nn.layers`). For DTML, whose steps use training mode only, the comparison accounts
for it: the running means are compared as they are and the PyTorch variances are converted step
by step to Flax's convention with the measured ``n`` of each layer, ``v_flax[t] = 0.9
v_flax[t-1] + (n-1)/n (v_torch[t] - 0.9 v_torch[t-1])``. SASSNet's discriminator update reads
the V-Net in evaluation mode, so the 1e-7 difference of the running variances would enter its
SDMs (measured: the discriminator's loss changes by 4e-8 to 2e-7 relative, its updates by up to
1e-4); its reference therefore keeps Flax's running variance
(``torch_steps.use_biased_running_var``) and the comparison is direct.

Two documented differences are excluded from (a) and (b) and checked on their own: DTML's
unused heads (see ``UNUSED``) and the learning rates, which jaxseg's optimizer evaluates in
float32 (the reference is given those numbers; ``test_learning_rates_follow_the_scripts``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")

import torch_reference as ref  # noqa: E402
import torch_steps  # noqa: E402

from jaxseg.data.synthetic import la_like  # noqa: E402
from jaxseg.interop.torch import import_state_dict  # noqa: E402
from jaxseg.methods import get_method  # noqa: E402
from jaxseg.nn import Discriminator3D, VNet  # noqa: E402
from jaxseg.train import NetState, create_train_state, jit_step, step_key  # noqa: E402
from jaxseg.train.optim import learning_rate, make_optimizer  # noqa: E402

METHODS = ("sassnet", "dtml")
PATCH = (32, 32, 32)
SPACING = (2.2, 2.2, 2.2)  # a 70 mm field of view, like the LA crops
N_FILTERS = 2
DISC_FILTERS = 2
LABELLED = 2
BATCH = 4
STEPS = 3
LR_STEP = 2  # the V-Net learning rate drops after every 2nd iteration (the scripts' 2500)
RAMPUP_DIVISOR = 1  # the ramp-up advances every iteration (the scripts' 150)

#: (a) float64 against float64, relative (module docstring).
F64_TOLERANCE = {"first_logged": 1e-12, "other": 1e-9}
#: (b) jaxseg-float32's deviations from the float64 reference are at most F32_FACTOR times the
#: reference's own float32 deviation (the largest of the group; see the test), or F32_FACTOR *
#: F32_FLOOR when that is smaller: F32_FLOOR is about 100 float32 epsilons, the spread of float32
#: results that differ only in summation order after a few steps through batch normalisation
#: (measured: up to 1e-6 in the first step's running statistics).
F32_FACTOR = 10.0
F32_FLOOR = 1e-5

#: jaxseg's network name -> the reference network's name for import_state_dict
NETS = {
    "sassnet": {"seg": "vnet", "disc": "discriminator3d"},
    "dtml": {"seg": "vnet", "sdm": "vnet"},
}

#: DTML's networks each leave one head unused (M_s its SDM head, M_d its segmentation head).
#: PyTorch's SGD skips parameters without a gradient, so the reference never changes them;
#: optax's weight decay shrinks them in jaxseg. They take no part in training or prediction;
#: test_dtml_unused_heads_only_decay checks both behaviours, the other tests leave them out.
UNUSED = {"sassnet": {}, "dtml": {"seg": "sdm_head", "sdm": "seg_head"}}


# ------------------------------------------------------------------------------- set-up


def config_for(method: str):
    config = get_method(method).default_config("smoke")
    config.data.patch = PATCH
    config.model.update(n_filters=N_FILTERS, has_dropout=False)
    config.optim.seg.update(decay_every=LR_STEP, decay_every_unit="iterations")
    config.loss.update(rampup_divisor=RAMPUP_DIVISOR, rampup_divisor_unit="iterations")
    if method == "sassnet":
        config.model.disc_filters = DISC_FILTERS
    return config


def narrow_module(name: str):
    """The jaxseg module of the narrow reference network ``name`` ("vnet" or
    "discriminator3d"), for ``import_state_dict(..., module=...)``."""
    if name == "vnet":
        return VNet(n_filters=N_FILTERS)
    return Discriminator3D(ndf=DISC_FILTERS)


def discriminator_without_dropout(config):
    """jaxseg's SASSNet discriminator, with its channel dropout off (no config key sets it)."""
    return Discriminator3D(ndf=config.model.get("disc_filters", 64), dropout_rate=0.0, dtype=None)


def torch_networks(method: str) -> dict:
    """Fresh float32 reference networks with seeded random weights and BN statistics."""
    nets = {"seg": ref.randomize_(ref.VNet(n_filters=N_FILTERS, has_dropout=False), seed=1)}
    if method == "sassnet":
        nets["disc"] = ref.randomize_(ref.FC3DDiscriminator(ndf=DISC_FILTERS, dropout=0), seed=2)
    else:
        nets["sdm"] = ref.randomize_(ref.VNet(n_filters=N_FILTERS, has_dropout=False), seed=3)
    return nets


def state_dict(module) -> dict[str, np.ndarray]:
    """The state_dict of ``module`` as float64 numpy arrays."""
    return {k: v.detach().numpy().astype(np.float64) for k, v in module.state_dict().items()}


@functools.cache
def batches() -> tuple[dict[str, np.ndarray], ...]:
    """``STEPS`` batches: 2 labelled + 2 unlabelled phantoms (unlabelled labels zeroed, as in
    jaxseg's pipeline), rotated by 90 degrees in the axial plane from one step to the next."""
    cases = [la_like(seed, shape=PATCH, spacing=SPACING) for seed in range(BATCH)]
    image = np.stack([c.image for c in cases]).astype(np.float32)
    label = np.stack([c.label for c in cases]).astype(np.int32)
    label[LABELLED:] = 0
    labelled = np.arange(BATCH) < LABELLED
    return tuple(
        {
            "image": np.ascontiguousarray(np.rot90(image, t, axes=(1, 2))),
            "label": np.ascontiguousarray(np.rot90(label, t, axes=(1, 2))),
            "labelled": labelled,
        }
        for t in range(STEPS)
    )


def jaxseg_learning_rate(method: str):
    """jaxseg's V-Net learning rate of iteration ``t + 1``, as its optimizer uses it.

    optax evaluates the decaying schedule in float32 (its update count is int32) even under
    ``jax_enable_x64``, so the reference is given these float32 numbers;
    ``test_learning_rates_follow_the_scripts`` checks them against the scripts' formula.
    """
    config = config_for(method)
    schedule = learning_rate(config.optim.seg, steps=int(config.train.steps))
    return lambda t: float(schedule(jnp.asarray(t, jnp.int32)))  # the int32 count of optax


# ------------------------------------------------------------------------ the reference


class Layout:
    """Maps a reference state_dict of network ``name`` to jaxseg's ``{"params", "batch_stats"}``
    exactly and in any dtype: the positions of its entries (float32 integers, exact below
    2**24) go once through ``import_state_dict``, which applies its names and layouts."""

    def __init__(self, name: str, reference: dict[str, np.ndarray]):
        self.keys = list(reference)
        self.shapes = {k: np.shape(reference[k]) for k in self.keys}
        sizes = [np.size(reference[k]) for k in self.keys]
        assert sum(sizes) < 2**24
        offsets = np.cumsum([0, *sizes])
        positions = {
            k: np.arange(offsets[i], offsets[i + 1], dtype=np.float32).reshape(
                np.shape(reference[k])
            )
            for i, k in enumerate(self.keys)
        }
        variables = import_state_dict(name, positions, module=narrow_module(name))
        variables.setdefault("batch_stats", {})
        self.index = jax.tree.map(lambda x: np.asarray(x).astype(np.int64), variables)

    def __call__(self, entries: dict[str, np.ndarray]) -> dict:
        """jaxseg's variables (float64) from ``entries``; missing names read as zeros."""
        flat = np.concatenate(
            [np.ravel(entries.get(k, np.zeros(self.shapes[k]))) for k in self.keys]
        ).astype(np.float64)
        return jax.tree.map(lambda i: flat[i], self.index)


def optimizer_state(optimizer, module) -> dict[str, dict[str, np.ndarray]]:
    """The reference optimizer's state by optax's field name and parameter name: SGD's momentum
    buffer as ``trace``, Adam's moments as ``mu`` and ``nu``."""
    fields = {"momentum_buffer": "trace", "exp_avg": "mu", "exp_avg_sq": "nu"}
    out = {}
    for pname, p in module.named_parameters():
        for field, value in optimizer.state.get(p, {}).items():
            if field in fields:
                out.setdefault(fields[field], {})[pname] = value.detach().numpy().copy()
    return out


@contextlib.contextmanager
def one_torch_thread():
    """PyTorch on one thread: its small convolutions are then several times faster than on
    threads that spin while XLA's own threads (and other processes) hold the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_reference(method: str, dtype) -> list[dict]:
    """The reference's ``STEPS`` iterations in ``dtype``: per step, the logged values and, per
    network, the state_dict and the optimizer state (float64 numpy). SASSNet's V-Net keeps
    Flax's running variance, DTML's PyTorch's (module docstring)."""
    with one_torch_thread():
        return _run_reference(method, dtype)


def _run_reference(method: str, dtype) -> list[dict]:
    nets = {name: copy.deepcopy(m).to(dtype) for name, m in torch_networks(method).items()}
    common = {
        "labelled_bs": LABELLED,
        "rampup_divisor": RAMPUP_DIVISOR,
        "lr_step": LR_STEP,
        "lr_of": jaxseg_learning_rate(method),
    }
    if method == "sassnet":
        torch_steps.use_biased_running_var(nets["seg"])
        steps = torch_steps.SASSNetSteps(nets["seg"], nets["disc"], **common)
    else:
        steps = torch_steps.DTMLSteps(nets["seg"], nets["sdm"], **common)
    history = []
    for batch in batches():
        image = torch.from_numpy(np.moveaxis(batch["image"], -1, 1).copy()).to(dtype)
        logged = steps.step(image, torch.from_numpy(batch["label"]))
        if method == "dtml":  # jaxseg's loss is the sum of the two networks' losses
            logged["loss"] = logged["loss_seg"] + logged["loss_sdm"]
        history.append(
            {
                "logged": logged,
                "states": {name: state_dict(m) for name, m in nets.items()},
                "optim": {
                    name: optimizer_state(steps.optimizers[name], m) for name, m in nets.items()
                },
            }
        )
    return history


def batchnorm_sizes(module) -> dict[str, int]:
    """Voxels per channel that each BatchNorm of ``module`` normalises over in one batch."""
    sizes, hooks = {}, []
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):

            def hook(m, inputs, output, name=name):
                sizes[name] = inputs[0].numel() // inputs[0].shape[1]

            hooks.append(m.register_forward_hook(hook))
    image = torch.from_numpy(np.moveaxis(batches()[0]["image"], -1, 1).copy())
    with torch.no_grad():
        module.eval()(image.to(next(module.parameters()).dtype))
    for h in hooks:
        h.remove()
    return sizes


def flax_convention(trajectory: list[dict], start: dict, sizes: dict) -> list[dict]:
    """The state_dicts of ``trajectory`` with each running variance replaced by the value of
    Flax's biased update from the same batch variances (module docstring)."""
    out, previous_torch, previous_flax = [], start, start
    for sd in trajectory:
        converted = dict(sd)
        for name, n in sizes.items():
            key = f"{name}.running_var"
            batch_term = sd[key] - 0.9 * previous_torch[key]  # 0.1 * unbiased batch variance
            converted[key] = 0.9 * previous_flax[key] + (n - 1) / n * batch_term
        previous_torch, previous_flax = sd, converted
        out.append(converted)
    return out


@functools.cache
def reference(method: str, dtype_name: str) -> dict:
    """The reference run in ``dtype_name`` in jaxseg's names, layouts and running-variance
    convention (float64): ``{"initial": {net: variables}, "steps": [{"logged", "states":
    {net: variables}, "optim": {net: {field: params-shaped tree}}}]}``."""
    history = run_reference(method, getattr(torch, dtype_name))
    initial, states, optim = {}, {}, {}
    for name, module in torch_networks(method).items():
        start = state_dict(module)
        layout = Layout(NETS[method][name], start)
        trajectory = [h["states"][name] for h in history]
        if method == "dtml":
            trajectory = flax_convention(trajectory, start, batchnorm_sizes(module))
        initial[name] = layout(start)
        states[name] = [layout(sd) for sd in trajectory]
        optim[name] = [
            {field: layout(values)["params"] for field, values in h["optim"][name].items()}
            for h in history
        ]
    steps = [
        {
            "logged": h["logged"],
            "states": {name: states[name][t] for name in states},
            "optim": {name: optim[name][t] for name in optim},
        }
        for t, h in enumerate(history)
    ]
    return {"initial": initial, "steps": steps}


# --------------------------------------------------------------------------------- jaxseg


def initial_state(method: str, config, dtype):
    """jaxseg's state of ``method`` holding the reference's initial weights in ``dtype``, with
    fresh optimizer states; its structure is checked against ``create_state``'s."""
    create = functools.partial(get_method(method).create_state, config)
    expected = jax.eval_shape(create, jax.random.key(0))
    nets = {}
    for name, module in torch_networks(method).items():
        network = NETS[method][name]
        variables = import_state_dict(network, state_dict(module), module=narrow_module(network))
        variables = jax.tree.map(lambda x: jnp.asarray(x, dtype), variables)
        section = config.optim["disc" if name == "disc" else "seg"]
        optimizer = make_optimizer(section, steps=int(config.train.steps))
        nets[name] = NetState(
            params=variables["params"],
            batch_stats=variables.get("batch_stats", {}),
            opt_state=optimizer.init(variables["params"]),
        )
    state = create_train_state(nets, 0)
    assert jax.tree.map(jnp.shape, state.nets) == jax.tree.map(jnp.shape, expected.nets)
    return state


def set_to_reference(state, step: dict, dtype):
    """``state`` with every network's parameters, batch statistics and optimizer moments
    replaced by the reference's ``step`` (its counters are kept)."""
    nets = {}
    for name, net in state.nets.items():
        variables = jax.tree.map(lambda x: jnp.asarray(x, dtype), step["states"][name])
        moments = jax.tree.map(lambda x: jnp.asarray(x, dtype), step["optim"][name])
        nets[name] = net.replace(
            params=variables["params"],
            batch_stats=variables["batch_stats"] if net.batch_stats else {},
            opt_state=optax.tree_utils.tree_set(net.opt_state, **moments),
        )
    return state.replace(nets=nets)


def run_jaxseg(method: str, dtype, synced_to: dict | None = None) -> list[dict]:
    """jaxseg's ``STEPS`` steps from the reference's initial weights, state and batch in
    ``dtype``; with ``synced_to`` (a reference run), each step after the first starts from the
    reference's state. Per step: the metrics and ``{net: {"params", "batch_stats"}}``."""
    config = config_for(method)
    with mock.patch("jaxseg.methods.sassnet._discriminator", discriminator_without_dropout):
        state = initial_state(method, config, dtype)
        step = jit_step(get_method(method).make_train_step(config))
    history = []
    for t, batch in enumerate(batches()):
        if synced_to is not None and t > 0:
            state = set_to_reference(state, synced_to["steps"][t - 1], dtype)
        batch = {**batch, "image": batch["image"].astype(dtype)}
        key = step_key(state)
        state, metrics = step(state, batch, key)
        nets = {
            name: {"params": net.params, "batch_stats": net.batch_stats}
            for name, net in state.nets.items()
        }
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(nets))
        history.append(
            {
                "logged": {k: float(v) for k, v in metrics.items()},
                "states": jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(nets)),
            }
        )
    assert int(state.step) == STEPS
    return history


@functools.cache
def jaxseg_float64_synced(method: str) -> list[dict]:
    with jax.enable_x64(True):
        return run_jaxseg(method, np.float64, synced_to=reference(method, "float64"))


@functools.cache
def jaxseg_float32(method: str) -> list[dict]:
    return run_jaxseg(method, np.float32)


# ---------------------------------------------------------------------------- comparisons


def _leaves(tree, leaf=None, skip=None) -> list[np.ndarray]:
    """The arrays of ``tree`` (those whose last key is ``leaf``, if given), except those under
    the top-level key ``skip``."""
    out = []
    for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [getattr(k, "key", None) for k in path]
        if (leaf is None or keys[-1] == leaf) and keys[0] != skip:
            out.append(np.asarray(value))
    return out


QUANTITIES = (("params", None), ("batch_stats", "mean"), ("batch_stats", "var"))


def deviations(got: list[dict], want: dict, method: str, *, per_step: bool) -> dict[str, float]:
    """``{"step{t}/{quantity}": relative deviation}`` of run ``got`` from reference ``want``.

    Logged values relative to their size. Per network: the parameters, running means and
    running variances, each as the largest deviation of an element relative to the largest
    change of that kind in the network, since the start of the run or (``per_step``) of the
    step. (Conv biases followed by batch normalisation have no gradient, only weight decay:
    their changes are too small to scale their deviations on their own.)
    """
    out = {}
    for t, step in enumerate(want["steps"]):
        for key, value in step["logged"].items():
            out[f"step{t}/{key}"] = abs(got[t]["logged"][key] - value) / abs(value)
        for name, initial in want["initial"].items():
            start = want["steps"][t - 1]["states"][name] if per_step and t else initial
            skip = UNUSED[method].get(name)
            for collection, leaf in QUANTITIES:
                w = _leaves(step["states"][name][collection], leaf, skip)
                if not w:
                    continue
                g = _leaves(got[t]["states"][name][collection], leaf, skip)
                w0 = _leaves(start[collection], leaf, skip)
                scale = max(np.max(np.abs(a - a0)) for a, a0 in zip(w, w0, strict=True))
                error = max(np.max(np.abs(a - b)) for a, b in zip(g, w, strict=True))
                out[f"step{t}/{name}/{leaf or collection}"] = error / scale
    return out


def _worst(values: dict[str, float], n: int = 4) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: -item[1])[:n]


@pytest.mark.parametrize("method", METHODS)
def test_float64_parity(method):
    """(a): each step in float64 from the reference's state, to ``F64_TOLERANCE``."""
    dev = deviations(
        jaxseg_float64_synced(method), reference(method, "float64"), method, per_step=True
    )
    assert len(dev) >= STEPS * 11
    for key, value in dev.items():
        kind = "first_logged" if key.startswith("step0/") and key.count("/") == 1 else "other"
        assert value <= F64_TOLERANCE[kind], (key, value, _worst(dev))


def _group(key: str) -> str:
    """``"step{t}/logged"`` for a logged value, ``"step{t}/{net}"`` for a network's quantities."""
    parts = key.split("/")
    return f"{parts[0]}/logged" if len(parts) == 2 else f"{parts[0]}/{parts[1]}"


def _group_max(values: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in values.items():
        out[_group(key)] = max(out.get(_group(key), 0.0), value)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_float32_within_reference_noise(method):
    """(b): over three float32 steps, jaxseg's largest deviation from the float64 reference in
    each group (a step's logged values; a step's parameters and statistics of one network) is at
    most ``F32_FACTOR`` times the reference float32 run's largest deviation in that group
    (floored at ``F32_FLOOR``). Groups, not single quantities: the float32 errors of DTML's SDM
    network compound chaotically, so single ratios scatter while group maxima are stable."""
    want = reference(method, "float64")
    noise = _group_max(
        deviations(reference(method, "float32")["steps"], want, method, per_step=False)
    )
    dev = deviations(jaxseg_float32(method), want, method, per_step=False)
    assert set(_group_max(dev)) == set(noise)
    ratios = {key: value / max(noise[_group(key)], F32_FLOOR) for key, value in dev.items()}
    for key, ratio in ratios.items():
        assert ratio <= F32_FACTOR, (key, dev[key], noise[_group(key)], _worst(ratios))


def test_dtml_unused_heads_only_decay():
    """DTML's unused heads: unchanged in the reference (no gradient: skipped by
    ``torch.optim.SGD``); in jaxseg, one SGD step on the weight-decay term alone."""
    want = reference("dtml", "float64")
    got = jaxseg_float64_synced("dtml")
    lr = jaxseg_learning_rate("dtml")
    for name, head in UNUSED["dtml"].items():
        start = want["initial"][name]["params"][head]
        for t in range(STEPS):
            for leaf, value in start.items():
                assert np.any(value != 0)
                theirs = want["steps"][t]["states"][name]["params"][head][leaf]
                np.testing.assert_array_equal(theirs, value)
                ours = got[t]["states"][name]["params"][head][leaf]
                np.testing.assert_allclose(ours, value * (1 - lr(t) * 1e-4), rtol=1e-14, atol=0)


def test_learning_rates_follow_the_scripts():
    """The learning rates both sides use (jaxseg's schedule, float32 numbers) are the scripts'
    ``base_lr * 0.1 ** (iter_num // 2500)`` with 2500 -> ``LR_STEP``, to float32 rounding."""
    for method in METHODS:
        lr = jaxseg_learning_rate(method)
        for t in range(2 * LR_STEP + 1):
            assert lr(t) == pytest.approx(0.01 * 0.1 ** (t // LR_STEP), rel=1e-7)
