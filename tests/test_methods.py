"""The methods' training steps on tiny inputs, and the optimizers against PyTorch's."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.methods import get_method
from jaxseg.methods import sassnet as sassnet_module
from jaxseg.train import jit_step
from jaxseg.train.config import load_config
from jaxseg.train.optim import make_optimizer

PATCH = (16, 16, 16)


def tiny_config(method: str):
    config = load_config(f"experiments/{method}/configs/la.py:smoke")
    config.data.patch = PATCH
    config.model.n_filters = 2
    if method == "sassnet":
        config.model.disc_filters = 2
    return config


def tiny_batch(labelled=(True, True, False, False), seed=0):
    rng = np.random.default_rng(seed)
    b = len(labelled)
    label = np.zeros((b, *PATCH), np.int32)
    label[:, 4:12, 5:11, 3:13] = 1
    image = (label + 0.3 * rng.standard_normal(label.shape)).astype(np.float32)[..., None]
    label[~np.asarray(labelled)] = 0  # the pipeline zeroes unlabelled items' labels
    return {"image": image, "label": label, "labelled": np.asarray(labelled)}


@functools.cache
def initial(method: str):
    config = tiny_config(method)
    module = get_method(method)
    state = jax.jit(functools.partial(module.create_state, config))(jax.random.key(0))
    return config, module, state


@functools.cache
def jitted_step(method: str):
    config, module, _ = initial(method)
    return jax.jit(module.make_train_step(config))


def changed(a, b) -> bool:
    return any(
        not np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


NETS = {"supervised": ("seg",), "sassnet": ("seg", "disc"), "dtml": ("seg", "sdm")}


@pytest.mark.parametrize("method", sorted(NETS))
def test_one_step_is_finite_moves_every_network_and_traces_once(method):
    config, module, state = initial(method)
    assert set(state.nets) == set(NETS[method])
    traces = []

    def counted(state, batch, key):
        traces.append(1)
        return module.make_train_step(config)(state, batch, key)

    step = jit_step(counted)
    before = jax.device_get(state)
    state, metrics = step(jax.tree.map(jnp.array, state), tiny_batch(), jax.random.key(1))
    state, metrics = step(state, tiny_batch(seed=1), jax.random.key(2))
    assert len(traces) == 1
    assert int(state.step) == 2
    assert metrics["loss"].shape == ()
    for name, value in metrics.items():
        assert np.isfinite(value), name
    for name in NETS[method]:
        assert changed(before.nets[name].params, state.nets[name].params), name
        assert changed(before.nets[name].opt_state, state.nets[name].opt_state), name


def test_sassnet_updates_touch_only_their_own_network():
    config, _, state = initial("sassnet")
    generator, discriminator = (jax.jit(f) for f in sassnet_module.make_updates(config))
    batch, key = tiny_batch(), jax.random.key(3)
    after_g, metrics = generator(state, batch, key)
    assert not changed(state.nets["disc"], after_g.nets["disc"])
    assert changed(state.nets["seg"].params, after_g.nets["seg"].params)
    assert metrics["adv_weight"] > 0 and np.isfinite(metrics["loss_adv"])
    after_d, d_metrics = discriminator(state, batch, key)
    assert not changed(state.nets["seg"], after_d.nets["seg"])
    assert changed(state.nets["disc"].params, after_d.nets["disc"].params)
    # Two classes, random init: the discriminator's cross-entropy starts near log 2.
    assert abs(float(d_metrics["loss_disc"]) - np.log(2)) < 0.1


def test_sassnet_adversarial_term_is_zero_without_unlabelled_items():
    config, _, state = initial("sassnet")
    generator, _ = sassnet_module.make_updates(config)
    _, metrics = jax.jit(generator)(state, tiny_batch((True, True)), jax.random.key(0))
    assert float(metrics["loss_adv"]) == 0.0


def test_dtml_consistency_alone_trains_both_networks():
    """With no labelled item the supervised terms vanish; the cross-task consistency on the
    unlabelled items still moves both networks (it is not detached on either side)."""
    _, _, state = initial("dtml")
    new, metrics = jitted_step("dtml")(state, tiny_batch((False, False)), jax.random.key(0))
    assert float(metrics["loss_dice"]) == 0.0 and float(metrics["loss_bce"]) == 0.0
    assert float(metrics["consistency"]) > 0
    for name in ("seg", "sdm"):
        assert changed(state.nets[name].params, new.nets[name].params), name


def test_predict_returns_probabilities():
    for method in NETS:
        config, module, state = initial(method)
        images = jnp.asarray(tiny_batch()["image"][:2])
        out = jax.jit(functools.partial(module.predict, config))(state.nets, images)
        assert out["prob"].shape == (2, *PATCH, 1)
        assert float(out["prob"].min()) >= 0 and float(out["prob"].max()) <= 1


def test_optimizer_settings_are_validated():
    with pytest.raises(ValueError, match="name"):
        make_optimizer({"name": "rmsprop", "lr": 0.1}, steps=10)
    with pytest.raises(ValueError, match="unknown"):
        make_optimizer({"name": "sgd", "lr": 0.1, "beta": 0.9}, steps=10)
    with pytest.raises(ValueError, match="lr"):
        make_optimizer({"name": "adam", "lr": 0.0}, steps=10)
    with pytest.raises(ValueError, match="unit"):
        make_optimizer(
            {"name": "sgd", "lr": 0.1, "decay_every": 1, "decay_every_unit": "x"}, steps=1
        )


@pytest.mark.parametrize(
    "section",
    [
        {
            "name": "sgd",
            "lr": 0.01,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "decay_every": 4,
            "decay_rate": 0.1,
        },
        # The same decay as a fraction of the 10-iteration run: 0.4 * 10 = every 4 iterations.
        {
            "name": "sgd",
            "lr": 0.01,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "decay_every": 0.4,
            "decay_every_unit": "run",
            "decay_rate": 0.1,
        },
        {"name": "adam", "lr": 1e-3, "b1": 0.9, "b2": 0.99},
    ],
)
def test_optimizers_follow_pytorch(section):
    """SGD (momentum, L2 weight decay, x0.1 learning-rate steps applied after every 4th
    iteration as the reference scripts do) and Adam against torch.optim on the same gradients."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(5)
    grads = rng.standard_normal((10, 5))
    opt = make_optimizer(section, steps=len(grads))
    params = jnp.asarray(p0, jnp.float32)
    state = opt.init(params)
    tp = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    if section["name"] == "sgd":
        topt = torch.optim.SGD([tp], lr=0.01, momentum=0.9, weight_decay=1e-4)
    else:
        topt = torch.optim.Adam([tp], lr=1e-3, betas=(0.9, 0.99))
    for i, g in enumerate(grads, start=1):
        updates, state = opt.update(jnp.asarray(g, jnp.float32), state, params)
        params = params + updates
        tp.grad = torch.tensor(g, dtype=torch.float64)
        topt.step()
        if section["name"] == "sgd" and i % 4 == 0:  # the reference's lr step
            for group in topt.param_groups:
                group["lr"] = 0.01 * 0.1 ** (i // 4)
        np.testing.assert_allclose(params, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", sorted(NETS))
def test_bfloat16_steps_track_float32_with_float32_state(method):
    """``train.precision = "bfloat16"``: the networks compute in bfloat16 (8-bit significands,
    a relative rounding of 2^-9 = 0.2 % per value), parameters, optimizer states and batch
    statistics stay float32, and the output heads compute in float32. The losses average
    thousands of voxel terms: over three steps they stay within 1 % of float32's (measured
    here: at most 0.5 %; on the smoke runs of every method, 4 steps: at most 0.8 %), SASSNet's
    SDM regression within 6 % (measured: 3.1 % at step 2; an untrained 2-filter V-Net's tanh
    SDMs are near 0, so a small absolute change is a large relative one). DTML's SDM terms are
    only required to be finite: at SDMs near 0, ``sigmoid(-1500 sdm)`` turns the bfloat16
    rounding of the features into differences of up to 33 % at step 2 (the amplification that
    also separates float32 from float64)."""
    _, module, state = initial(method)
    mixed = tiny_config(method)
    mixed.train.precision = "bfloat16"
    steps = {"float32": jitted_step(method), "bfloat16": jax.jit(module.make_train_step(mixed))}
    losses = {}
    for name, step in steps.items():
        current, losses[name] = state, []
        for i in range(3):
            current, metrics = step(current, tiny_batch(seed=i), jax.random.key(i))
            losses[name].append({k: float(v) for k, v in metrics.items() if k.startswith("loss")})
        for leaf in jax.tree.leaves(current.nets):
            if jnp.issubdtype(leaf.dtype, jnp.floating):
                assert leaf.dtype == jnp.float32
    amplified = {"loss", "loss_sdm", "loss_sdm_dice"} if method == "dtml" else set()
    for exact, mixed_ in zip(losses["float32"], losses["bfloat16"], strict=True):
        for key, value in exact.items():
            assert np.isfinite(mixed_[key]), key
            if key not in amplified:
                rel = 6e-2 if key == "loss_sdm" else 1e-2
                assert mixed_[key] == pytest.approx(value, rel=rel, abs=1e-4), key
    jaxpr = str(jax.make_jaxpr(lambda s, b: module.predict(mixed, s.nets, b))(
        state, tiny_batch()["image"]
    ))  # fmt: skip
    assert "bf16" in jaxpr and "conv_general_dilated" in jaxpr
