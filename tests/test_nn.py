"""jaxseg.nn: parameter counts of the reference configurations, shapes, train/eval behaviour."""

import functools
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference_names import parse_torch_names

from jaxseg.interop.torch import NAMES, REFERENCE_INPUTS, reference_module
from jaxseg.nn import AtlasSTN, Discriminator3D, UNet, VNet, layers
from jaxseg.nn.layers import channel_dropout, normalize

KEY = jax.random.key(0)


def n_params(variables) -> int:
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


def init_shapes(module, *shapes):
    inputs = [jnp.zeros(s) for s in shapes]
    return jax.eval_shape(lambda: module.init(KEY, *inputs, train=False))


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_equal_the_reference(name):
    expected = parse_torch_names()[name]["count"]
    variables = init_shapes(reference_module(name), *REFERENCE_INPUTS[name])
    assert n_params(variables) == expected


def test_stipple_unet_size():
    variables = init_shapes(UNet.stipple(2, 2), (1, 64, 64, 1))
    assert n_params(variables) == 31_042_434
    small = init_shapes(UNet.stipple(3, 3, features=(8, 16, 32)), (1, 16, 16, 16, 1))
    assert "batch_stats" in small and n_params(small) > 0


@pytest.mark.parametrize(
    ("module", "inputs", "expected"),
    [
        (
            VNet(n_filters=4),
            [(2, 16, 16, 32, 1)],
            {"seg": (2, 16, 16, 32, 1), "sdm": (2, 16, 16, 32, 1)},
        ),
        (
            VNet(n_classes=2, n_filters=16, stages=(1, 2, 2), normalization="groupnorm"),
            [(1, 8, 12, 2)],
            {"seg": (1, 8, 12, 2), "sdm": (1, 8, 12, 2)},
        ),
        (
            VNet(n_filters=4, normalization="instancenorm"),
            [(1, 16, 16, 16, 2)],
            {"seg": (1, 16, 16, 16, 1), "sdm": (1, 16, 16, 16, 1)},
        ),
        (Discriminator3D(ndf=4), [(3, 32, 16, 48, 1), (3, 32, 16, 48, 1)], {"logits": (3, 2)}),
        (UNet.itn(2, 3), [(2, 24, 40, 1)], {"logits": (2, 24, 40, 3)}),
        (UNet.stipple(3, 2, features=(4, 8, 16)), [(1, 8, 8, 12, 1)], {"logits": (1, 8, 8, 12, 2)}),
        (
            AtlasSTN(2),
            [(2, 32, 48, 2)],
            {
                "velocity": (2, 16, 24, 2),
                "translation": (2, 2),
                "rotation": (2, 1),
                "log_scale": (2, 2),
            },
        ),
        (
            AtlasSTN(3, features=(4, 4, 8), fc_features=8),
            [(1, 16, 16, 32, 3)],
            {
                "velocity": (1, 8, 8, 16, 3),
                "translation": (1, 3),
                "rotation": (1, 3),
                "log_scale": (1, 3),
            },
        ),
    ],
)
def test_output_shapes(module, inputs, expected):
    xs = [jnp.ones(s) for s in inputs]
    variables = jax.jit(lambda *xs: module.init(KEY, *xs, train=False))(*xs)
    out = jax.jit(lambda v, *xs: module.apply(v, *xs, train=False))(variables, *xs)
    assert {k: v.shape for k, v in out.items()} == expected
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in out.values())


def test_vnet_sdm_head_is_bounded():
    x = 5 * jax.random.normal(KEY, (1, 16, 16, 16, 1))
    module = VNet(n_filters=4)
    out = jax.jit(lambda x: module.apply(module.init(KEY, x, train=False), x, train=False))(x)
    assert float(jnp.abs(out["sdm"]).max()) <= 1.0


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (VNet(n_filters=4), (1, 24, 16, 16, 1)),
        (UNet.itn(2, 2), (1, 12, 16, 1)),
        (AtlasSTN(2), (1, 40, 32, 2)),
    ],
)
def test_inputs_of_the_wrong_size_raise(module, shape):
    with pytest.raises(ValueError, match="divisible by"):
        module.init(KEY, jnp.zeros(shape), train=False)


def test_discriminator_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="share batch and spatial shape"):
        Discriminator3D(ndf=4).init(
            KEY, jnp.zeros((1, 16, 16, 16, 1)), jnp.zeros((1, 32, 16, 16, 1)), train=False
        )


def test_unknown_normalization_raises():
    with pytest.raises(ValueError, match="normalization"):
        VNet(n_filters=4, normalization="layernorm").init(
            KEY, jnp.zeros((1, 16, 16, 16, 1)), train=False
        )


def test_dropout_only_in_training_and_keyed():
    module = VNet(n_filters=4)
    x = jax.random.normal(KEY, (1, 16, 16, 16, 1))
    variables = jax.jit(lambda x: module.init(KEY, x, train=False))(x)

    @jax.jit
    def train(key):
        out, _ = module.apply(
            variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
        )
        return out["seg"]

    a, b = train(jax.random.key(1)), train(jax.random.key(2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, train(jax.random.key(1)))
    evaluate = jax.jit(lambda v, x: module.apply(v, x, train=False)["seg"])
    np.testing.assert_array_equal(evaluate(variables, x), evaluate(variables, x))
    no_dropout = VNet(n_filters=4, has_dropout=False)
    out, _ = jax.jit(  # no dropout rng needed
        lambda v, x: no_dropout.apply(v, x, train=True, mutable=["batch_stats"])
    )(variables, x)
    assert out["seg"].shape == x.shape


def test_channel_dropout_drops_whole_feature_maps():
    class Drop(nn.Module):
        @nn.compact
        def __call__(self, x):
            return channel_dropout(x, 0.5, train=True)

    x = jnp.ones((4, 6, 5, 7, 32))
    y = Drop().apply({}, x, rngs={"dropout": KEY})
    per_map = y.reshape(4, -1, 32)
    assert bool(jnp.all(per_map.min(axis=1) == per_map.max(axis=1)))  # constant per map
    assert set(np.unique(np.asarray(y)).tolist()) == {0.0, 2.0}  # inverted-dropout scaling
    assert 0.3 < float(jnp.mean(per_map[:, 0] == 0)) < 0.7


def test_batchnorm_uses_batch_statistics_in_training_and_running_ones_in_eval():
    class Norm(nn.Module):
        @nn.compact
        def __call__(self, x, *, train):
            return normalize(x, "batchnorm", train=train)

    x = 3 + 2 * jax.random.normal(KEY, (4, 8, 8, 8, 5))
    variables = Norm().init(KEY, x, train=False)
    y, updates = Norm().apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2, 3)), 1, atol=1e-3)
    # PyTorch's momentum 0.1: running = 0.9 * running + 0.1 * batch.
    np.testing.assert_allclose(
        updates["batch_stats"]["BatchNorm_0"]["mean"],
        0.1 * jnp.mean(x, axis=(0, 1, 2, 3)),
        rtol=1e-5,
    )
    fresh = Norm().apply(variables, x, train=False)  # running mean 0, var 1: nearly identity
    np.testing.assert_allclose(fresh, x / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_stn_starts_at_the_identity_affine():
    module = AtlasSTN(2)
    x = jax.random.normal(KEY, (2, 32, 32, 2))
    out = module.apply(module.init(KEY, x), x)
    for name in ("translation", "rotation", "log_scale"):
        np.testing.assert_array_equal(out[name], 0)
    assert float(jnp.abs(out["velocity"]).max()) > 0


def test_modules_jit_and_run_in_bfloat16():
    """A bfloat16 V-Net computes its body in bfloat16 and its 1x1 heads in float32 (DTML's
    sigmoid(-1500 sdm) amplifies any rounding of the SDM); its parameters stay float32."""
    module = VNet(n_filters=4, dtype=jnp.bfloat16)
    x = jnp.ones((1, 16, 16, 16, 1))
    variables = jax.jit(lambda x: module.init(KEY, x, train=False))(x)
    out = jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x)
    assert out["seg"].dtype == out["sdm"].dtype == jnp.float32
    jaxpr = str(jax.make_jaxpr(lambda v, x: module.apply(v, x, train=False))(variables, x))
    assert "bf16" in jaxpr
    assert jax.tree.leaves(variables["params"])[0].dtype == jnp.float32


@pytest.mark.parametrize(
    "strides,kernel,padding", [(1, 3, 1), (2, 2, 0), (1, 1, 0), (2, 4, 1), (3, 3, 2)]
)
def test_sliced_convolution_forms_equal_the_direct_convolution(strides, kernel, padding):
    """The sliced forms of 3D convolutions (2D-slice sums, space-to-depth) compute lax's
    function, values and gradients, on a non-cubic input with odd sizes, with the same
    parameters."""
    x = jax.random.normal(KEY, (2, 7, 6, 5, 3))

    def value_and_grads(impl):
        conv = layers.conv(6, kernel, 3, strides=strides, padding=padding, impl=impl)
        variables = conv.init(KEY, x)
        f = jax.jit(lambda v, x: jnp.sum(jnp.sin(conv.apply(v, x))))
        return variables, f(variables, x), jax.jit(jax.grad(f, argnums=(0, 1)))(variables, x)

    (variables, value, grads) = value_and_grads("sliced")
    (direct_variables, direct, direct_grads) = value_and_grads("lax")
    chex.assert_trees_all_equal(variables, direct_variables)
    np.testing.assert_allclose(value, direct, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(direct_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_sliced_forms_are_used_where_chosen():
    """ "sliced" and "auto" on CPU lower a 3D convolution to 2D ones; "lax" keeps it 3D."""
    conv = functools.partial(layers.conv, 4, 3, 3)
    x = jnp.ones((1, 8, 8, 8, 2))
    variables = conv().init(KEY, x)

    def convolution_ranks(impl):
        text = jax.jit(conv(impl=impl).apply).lower(variables, x).as_text()
        return {
            len(line.split("x")) for line in re.findall(r"convolution.*?-> tensor<([^>]*)>", text)
        }

    assert convolution_ranks("lax") == {6}  # 5 dimensions and the dtype
    assert convolution_ranks("sliced") == {5}
    if jax.default_backend() == "cpu":
        assert convolution_ranks("auto") == {5}


def test_networks_pass_the_convolution_choice_down():
    """The same variables give the same outputs with either choice; an unknown one raises."""
    x = jax.random.normal(KEY, (1, 16, 16, 16, 1))
    variables = VNet(n_filters=4).init(KEY, x, train=False)
    outs = {
        impl: VNet(n_filters=4, conv_impl=impl).apply(variables, x, train=False)
        for impl in ("lax", "sliced")
    }
    np.testing.assert_allclose(outs["sliced"]["seg"], outs["lax"]["seg"], rtol=1e-4, atol=1e-5)
    for module in (VNet(conv_impl="xla"), UNet(conv_impl="xla"), AtlasSTN(conv_impl="xla")):
        with pytest.raises(ValueError, match="conv_impl must be one of"):
            module.init(KEY, x, train=False)
    with pytest.raises(ValueError, match="conv_impl must be one of"):
        Discriminator3D(conv_impl="xla").init(KEY, x, x, train=False)


def test_transposed_convolution_equals_flax_conv_transpose():
    x = jax.random.normal(KEY, (2, 3, 4, 5, 3))
    ours = layers.conv_transpose(4, 2, 3)
    variables = ours.init(KEY, x)
    flax_module = nn.ConvTranspose(
        4, (2, 2, 2), strides=(2, 2, 2), padding="VALID", transpose_kernel=True
    )
    np.testing.assert_allclose(
        ours.apply(variables, x), flax_module.apply(variables, x), rtol=1e-5, atol=1e-6
    )
