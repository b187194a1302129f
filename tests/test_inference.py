"""Sliding-window prediction against a loop-by-loop numpy version of the LA papers' procedure."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage as ndi

from jaxseg.inference import sliding_window, window_starts

# Small stand-in for the LA setting (patch 112x112x80, stride 18x18x4).
PATCH = (16, 16, 8)
CHANNELS, CLASSES = 2, 3


def reference_sliding_window(predict, image, patch, stride, weight=None):
    """The reference test procedure for one case ``(*S, C)``, with numpy and Python loops.

    ``predict`` maps one patch ``(*patch, C)`` to ``(*patch, K)``. ``weight`` (``patch``-shaped)
    turns the average into a weighted one; ``None`` is the reference's window count.
    """
    w, h, d = image.shape[:3]
    pads = [max(p - n, 0) for n, p in zip((w, h, d), patch)]
    lo = [q // 2 for q in pads]
    image = np.pad(image, [(lo[i], pads[i] - lo[i]) for i in range(3)] + [(0, 0)])
    ww, hh, dd = image.shape[:3]
    sx = math.ceil((ww - patch[0]) / stride[0]) + 1
    sy = math.ceil((hh - patch[1]) / stride[1]) + 1
    sz = math.ceil((dd - patch[2]) / stride[2]) + 1
    if weight is None:
        weight = np.ones(patch)
    score, count = None, np.zeros((ww, hh, dd))
    for x in range(sx):
        xs = min(stride[0] * x, ww - patch[0])
        for y in range(sy):
            ys = min(stride[1] * y, hh - patch[1])
            for z in range(sz):
                zs = min(stride[2] * z, dd - patch[2])
                window = np.s_[xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]]
                out = predict(image[window])
                if score is None:
                    score = np.zeros((ww, hh, dd, out.shape[-1]))
                score[window] += out * weight[..., None]
                count[window] += weight
    score = score / count[..., None]
    return score[lo[0] : lo[0] + w, lo[1] : lo[1] + h, lo[2] : lo[2] + d]


def make_network(rng, patch=PATCH):
    """A fixed random 3x3x3 convolution plus a bias that varies over the patch, then a sigmoid.

    Returns the batched JAX version and the numpy/scipy version on one patch. The bias makes the
    output depend on where a voxel lies in its window, so a misplaced window changes the result.
    """
    kernel = rng.normal(size=(3, 3, 3, CHANNELS, CLASSES)).astype(np.float32) / 4
    bias = rng.normal(size=(*patch, CLASSES)).astype(np.float32)

    def jax_fn(x):
        y = jax.lax.conv_general_dilated(
            x,
            jnp.asarray(kernel),
            window_strides=(1, 1, 1),
            padding="SAME",
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        return jax.nn.sigmoid(y + bias[None])

    def numpy_fn(x):
        x = x.astype(np.float64)
        y = np.zeros((*x.shape[:3], CLASSES))
        for k in range(CLASSES):
            for c in range(CHANNELS):
                y[..., k] += ndi.correlate(x[..., c], kernel[..., c, k], mode="constant")
        return 1 / (1 + np.exp(-(y + bias)))

    return jax_fn, numpy_fn


def gaussian_weight(patch):
    """The Gaussian importance map of the docs: centre (p - 1) / 2, sigma p / 8, max 1."""
    axes = np.meshgrid(*[np.arange(p) for p in patch], indexing="ij")
    r2 = sum(((a - (p - 1) / 2) / (p / 8)) ** 2 for a, p in zip(axes, patch))
    return np.exp(-0.5 * r2)


@pytest.mark.parametrize(
    ("shape", "stride"),
    [
        ((30, 21, 13), (4, 4, 2)),  # larger than the patch, the LA stride ratio
        ((30, 21, 13), (5, 7, 3)),  # strides that do not divide the overhang
        ((10, 20, 5), (4, 4, 2)),  # padded on the first and last axis
        ((7, 9, 3), (8, 8, 4)),  # padded on every axis: a single window
        ((16, 16, 8), (4, 4, 2)),  # exactly the patch
        ((33, 16, 17), (16, 16, 8)),  # non-overlapping windows with a flush last one
    ],
)
def test_matches_reference_procedure(rng, shape, stride):
    jax_fn, numpy_fn = make_network(rng)
    volume = rng.normal(size=(*shape, CHANNELS)).astype(np.float32)
    got = sliding_window(jax_fn, volume, patch=PATCH, stride=stride, batch_size=3)
    want = reference_sliding_window(numpy_fn, volume, PATCH, stride)
    assert got.shape == (*shape, CLASSES)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_gaussian_matches_weighted_reference(rng):
    jax_fn, numpy_fn = make_network(rng)
    volume = rng.normal(size=(27, 12, 15, CHANNELS)).astype(np.float32)
    got = sliding_window(jax_fn, volume, patch=PATCH, stride=(5, 4, 3), blend="gaussian")
    want = reference_sliding_window(numpy_fn, volume, PATCH, (5, 4, 3), gaussian_weight(PATCH))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_la_patch_and_stride(rng):
    """The LA papers' own patch and stride, with a volume padded along z."""
    patch, stride = (112, 112, 80), (18, 18, 4)
    ramp = np.linspace(-1, 1, math.prod(patch)).reshape(*patch, 1)

    def numpy_fn(x):
        return np.concatenate([x * 0.5 + ramp, np.tanh(x) * ramp], axis=-1)

    def jax_fn(x):
        r = jnp.asarray(ramp, jnp.float32)[None]
        return jnp.concatenate([x * 0.5 + r, jnp.tanh(x) * r], axis=-1)

    volume = rng.normal(size=(118, 131, 75, 1)).astype(np.float32)
    got = sliding_window(jax_fn, volume, patch=patch, stride=stride, batch_size=4)
    want = reference_sliding_window(numpy_fn, volume, patch, stride)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


@pytest.mark.parametrize("blend", ["mean", "gaussian"])
def test_batch_size_does_not_change_the_result(rng, blend):
    jax_fn, _ = make_network(rng)
    volume = rng.normal(size=(23, 19, 11, CHANNELS)).astype(np.float32)
    # 3 x 2 x 3 = 18 windows: 4 leaves a partial last batch of 2, 40 exceeds the count.
    predict = functools.partial(
        sliding_window, jax_fn, volume, patch=PATCH, stride=(4, 4, 2), blend=blend
    )
    single = predict(batch_size=1)
    for batch_size in (4, 40):
        np.testing.assert_allclose(predict(batch_size=batch_size), single, rtol=1e-6, atol=0)


@pytest.mark.parametrize("blend", ["mean", "gaussian"])
def test_identity_gives_back_the_input(rng, blend):
    volume = rng.normal(size=(21, 13, 10, CHANNELS)).astype(np.float32)
    got = sliding_window(lambda x: x, volume, patch=PATCH, stride=(3, 5, 2), blend=blend)
    np.testing.assert_allclose(got, volume, rtol=1e-6, atol=0)
    # Small integers: the mean is exact in float32.
    ints = rng.integers(-50, 50, size=volume.shape).astype(np.float32)
    got = sliding_window(lambda x: x, ints, patch=PATCH, stride=(3, 5, 2), blend="mean")
    np.testing.assert_array_equal(got, ints)


def test_gaussian_blend_weights_the_centre(rng):
    jax_fn, _ = make_network(rng)
    volume = rng.normal(size=(24, 20, 12, CHANNELS)).astype(np.float32)
    options = dict(patch=PATCH, stride=(4, 4, 2))
    mean = sliding_window(jax_fn, volume, blend="mean", **options)
    gauss = sliding_window(jax_fn, volume, blend="gaussian", **options)
    assert np.abs(np.asarray(mean) - np.asarray(gauss)).max() > 1e-2

    def constant(x):
        return jnp.full((*x.shape[:-1], 2), 0.3, jnp.float32)

    mean = sliding_window(constant, volume, blend="mean", **options)
    gauss = sliding_window(constant, volume, blend="gaussian", **options)
    np.testing.assert_allclose(mean, 0.3, rtol=1e-6)
    np.testing.assert_allclose(gauss, mean, rtol=1e-6)


def test_gaussian_equals_mean_without_overlap(rng):
    """Each voxel in exactly one window: the weights cancel."""
    jax_fn, _ = make_network(rng)
    volume = rng.normal(size=(32, 16, 24, CHANNELS)).astype(np.float32)
    mean = sliding_window(jax_fn, volume, patch=PATCH, stride=PATCH)
    gauss = sliding_window(jax_fn, volume, patch=PATCH, stride=PATCH, blend="gaussian")
    np.testing.assert_allclose(gauss, mean, rtol=1e-5)


def test_default_stride_is_half_the_patch(rng):
    jax_fn, numpy_fn = make_network(rng)
    volume = rng.normal(size=(29, 16, 13, CHANNELS)).astype(np.float32)
    got = sliding_window(jax_fn, volume, patch=PATCH)
    want = reference_sliding_window(numpy_fn, volume, PATCH, (8, 8, 4))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_window_starts():
    # The LA setting along x/y (patch 112, stride 18) and z (patch 80, stride 4).
    assert window_starts(112, 112, 18) == [0]
    assert window_starts(130, 112, 18) == [0, 18]
    assert window_starts(131, 112, 18) == [0, 18, 19]
    assert window_starts(88, 80, 4) == [0, 4, 8]
    assert window_starts(89, 80, 4) == [0, 4, 8, 9]
    for size in range(16, 60):
        for stride in (1, 3, 7, 16):
            starts = window_starts(size, 16, stride)
            assert len(starts) == math.ceil((size - 16) / stride) + 1
            assert starts[0] == 0 and starts[-1] == size - 16  # flush with the end
            steps = np.diff(starts)
            assert np.all(steps[:-1] == stride) and np.all((steps > 0) & (steps <= stride))
    with pytest.raises(ValueError, match="at least patch"):
        window_starts(10, 16, 4)
    with pytest.raises(ValueError, match="positive"):
        window_starts(20, 16, 0)


def test_jitted_once_per_shape(rng):
    jax_fn, _ = make_network(rng)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def predict(volume):
        return sliding_window(jax_fn, volume, patch=PATCH, stride=(4, 4, 2), batch_size=2)

    a = rng.normal(size=(20, 18, 10, CHANNELS)).astype(np.float32)
    first = predict(a)
    second = predict(a + 1)
    predict(jnp.asarray(a * 2))
    assert not np.allclose(first, second)
    eager = sliding_window(jax_fn, a, patch=PATCH, stride=(4, 4, 2), batch_size=2)
    np.testing.assert_allclose(first, eager, rtol=1e-6, atol=1e-7)
    # A new shape is a new trace, which the counter catches.
    with pytest.raises(AssertionError):
        predict(a[:19])


def test_invalid_arguments_raise(rng):
    volume = np.zeros((20, 20, 10, 1), np.float32)

    def identity(x):
        return x

    with pytest.raises(ValueError, match=r"\(\*S, C\) with 3 spatial axes"):
        sliding_window(identity, volume[..., 0], patch=PATCH)
    with pytest.raises(ValueError, match=r"\(\*S, C\) with 2 spatial axes"):
        sliding_window(identity, volume, patch=(16, 16))
    with pytest.raises(ValueError, match="one value per spatial axis"):
        sliding_window(identity, volume, patch=PATCH, stride=(4, 4))
    with pytest.raises(ValueError, match="patch must be positive"):
        sliding_window(identity, volume, patch=(16, 0, 8))
    with pytest.raises(ValueError, match=r"stride must lie in \[1, patch\]"):
        sliding_window(identity, volume, patch=PATCH, stride=(4, 0, 2))
    with pytest.raises(ValueError, match=r"stride must lie in \[1, patch\]"):
        sliding_window(identity, volume, patch=PATCH, stride=(17, 4, 2))
    with pytest.raises(ValueError, match="batch_size"):
        sliding_window(identity, volume, patch=PATCH, batch_size=0)
    with pytest.raises(ValueError, match="blend"):
        sliding_window(identity, volume, patch=PATCH, blend="median")
    with pytest.raises(ValueError, match=r"predict_fn must map \(1, \*\(16, 16, 8\), 1\)"):
        sliding_window(lambda x: x[:, ::2], volume, patch=PATCH)
