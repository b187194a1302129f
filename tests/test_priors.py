"""STIPPLE priors: each function against a direct NumPy loop of its specification, limits of the
prior-driven activations, recovery of a known organ position, and the pseudo-label ranking."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage as ndi

from jaxseg.priors import (
    build_spatial_prior,
    locate_prior,
    place_prior,
    prior_driven_sigmoid,
    prior_driven_softmax,
    select_pseudo_labels,
)

# Label volumes of different shapes, as in a real data set.
SHAPES = [(20, 18, 16), (16, 22, 20), (18, 16, 24), (22, 20, 18)]


def blob_labels(rng, shape, fraction):
    """A smooth random organ-like mask covering about ``fraction`` of the volume."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma=2.5)
    return field > np.quantile(field, 1.0 - fraction)


def ellipsoid(shape, center, radii, softness=None):
    """Mask (or, with ``softness``, a smooth probability) of an axis-aligned ellipsoid."""
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij", sparse=True)
    level = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)))
    if softness is None:
        return level <= 1.0
    return 1.0 / (1.0 + np.exp((level - 1.0) / softness))


# --- build_spatial_prior ------------------------------------------------------------------------


def reference_prior(masks, bins, size=None):
    """Algorithm 1, voxel by voxel: bounding-box centres, windows and bins by explicit loops."""
    boxes = []
    for mask in masks:
        points = np.argwhere(mask)
        if len(points):
            boxes.append((mask, points.min(axis=0), points.max(axis=0)))
    if size is None:
        size = [max(hi[a] - lo[a] + 1 for _, lo, hi in boxes) for a in range(3)]
    wp, hp, dz = size
    sums = np.zeros((wp, hp, bins))
    added = np.zeros(bins)
    for mask, lo, hi in boxes:
        start = [(lo[a] + hi[a]) // 2 - size[a] // 2 for a in range(3)]
        for s in range(dz):
            b = s * bins // dz
            added[b] += 1
            for i in range(wp):
                for j in range(hp):
                    x, y, z = start[0] + i, start[1] + j, start[2] + s
                    if 0 <= x < mask.shape[0] and 0 <= y < mask.shape[1] and 0 <= z < mask.shape[2]:
                        sums[i, j, b] += mask[x, y, z]
    return (sums / added).astype(np.float32)


@pytest.mark.parametrize(
    ("bins", "size"), [(1, None), (3, None), (5, (9, 12, 11)), (4, (24, 7, 26))]
)
def test_build_spatial_prior_matches_loop_reference(rng, bins, size):
    # (24, 7, 26) is larger than every volume along X and Z: windows leave the volumes.
    labels = [blob_labels(rng, shape, 0.04).astype(np.uint8) * 3 for shape in SHAPES]
    prior = build_spatial_prior(labels, bins=bins, size=size)
    expected = reference_prior([label != 0 for label in labels], bins, size)
    assert prior.dtype == np.float32 and prior.shape == expected.shape
    np.testing.assert_array_equal(prior, expected)
    assert prior.min() >= 0.0 and prior.max() <= 1.0


def test_build_spatial_prior_of_one_organ_seen_everywhere_is_its_mask():
    # The same ellipsoid (odd extents 7, 5, 9) at different places in volumes of different
    # shapes: every window holds the same mask, whatever the bins, so each bin is that mask's
    # slices averaged.
    organ = ellipsoid((7, 5, 9), (3, 2, 4), (3, 2, 4))
    labels = []
    for shape, corner in zip(SHAPES, [(0, 0, 0), (9, 17, 11), (5, 3, 15), (2, 8, 4)]):
        label = np.zeros(shape, np.int32)
        label[tuple(slice(c, c + n) for c, n in zip(corner, organ.shape))] = organ
        labels.append(label)
    np.testing.assert_array_equal(build_spatial_prior(labels, bins=9), organ.astype(np.float32))
    thirds = build_spatial_prior(labels, bins=3)
    for b in range(3):
        np.testing.assert_allclose(thirds[..., b], organ[..., 3 * b : 3 * b + 3].mean(-1))


def test_build_spatial_prior_window_of_an_even_extent_starts_before_the_box():
    # Organ on x = 2..5 (extent 4): centre (2 + 5) // 2 = 3, window 3 - 2 = 1 .. 4.
    label = np.zeros((8, 3, 3), np.int32)
    label[2:6, 1, 1] = 1
    np.testing.assert_array_equal(build_spatial_prior([label], bins=1)[:, 0, 0], [0, 1, 1, 1])
    np.testing.assert_array_equal(
        build_spatial_prior([label], bins=1, size=(5, 1, 1))[:, 0, 0], [0, 1, 1, 1, 1]
    )


def test_build_spatial_prior_classes_are_one_prior_each(rng):
    labels = []
    for n, shape in enumerate(SHAPES):
        label = blob_labels(rng, shape, 0.05).astype(np.int64)
        if n != 2:  # volume 2 has no class 2: it is skipped for that class
            label[blob_labels(rng, shape, 0.03) & (label == 0)] = 2
        labels.append(label)
    priors = build_spatial_prior(labels, bins=4, classes=(1, 2))
    assert isinstance(priors, tuple) and len(priors) == 2
    for prior, c in zip(priors, (1, 2)):
        np.testing.assert_array_equal(prior, reference_prior([lab == c for lab in labels], 4))
    # An organ-free volume adds nothing to the binary prior either.
    binary = build_spatial_prior([*labels, np.zeros((8, 8, 8), np.int64)], bins=4)
    np.testing.assert_array_equal(binary, reference_prior([lab != 0 for lab in labels], 4))


def test_build_spatial_prior_invalid_arguments_raise():
    label = np.zeros((10, 10, 10), np.int32)
    label[2:5, 3:6, 4:7] = 1
    with pytest.raises(ValueError, match="fewer than bins=4"):
        build_spatial_prior([label], bins=4)  # the default window has 3 slices
    with pytest.raises(ValueError, match="no label volume contains the organ"):
        build_spatial_prior([np.zeros_like(label)], bins=1)
    with pytest.raises(ValueError, match="no label volume contains the organ"):
        build_spatial_prior([label], bins=1, classes=(1, 2))
    with pytest.raises(ValueError, match=r"\(X, Y, Z\)"):
        build_spatial_prior([label[0]], bins=1)
    with pytest.raises(ValueError, match=r"\(X, Y, Z\)"):
        build_spatial_prior([], bins=1)
    with pytest.raises(ValueError, match="size must be 3 positive ints"):
        build_spatial_prior([label], bins=1, size=(3, 0, 3))
    with pytest.raises(ValueError, match="bins must be"):
        build_spatial_prior([label], bins=0)


# --- place_prior --------------------------------------------------------------------------------


def reference_place(prior, center, shape, extent, floor):
    """The placed prior voxel by voxel."""
    wp, hp, bins = prior.shape
    start = (center[0] - wp // 2, center[1] - hp // 2, center[2] - extent // 2)
    out = np.empty(shape)
    for x, y, z in itertools.product(*map(range, shape)):
        i, j, s = x - start[0], y - start[1], z - start[2]
        if 0 <= i < wp and 0 <= j < hp and 0 <= s < extent:
            out[x, y, z] = min(max(prior[i, j, s * bins // extent], floor), 1.0 - floor)
        else:
            out[x, y, z] = floor
    return out


def test_place_prior_matches_loop_reference_with_a_traced_center(rng):
    shape = (16, 18, 20)
    prior = rng.uniform(size=(7, 6, 4)).astype(np.float32)
    prior[0, 0] = [0.0, 1.0, 0.0, 1.0]  # exact 0 and 1 are clipped to [floor, 1 - floor]

    @jax.jit
    @chex.assert_max_traces(n=1)
    def place(center):
        return place_prior(prior, center, shape, 9, floor=1e-3)

    chex.clear_trace_counter()
    # Inside, across the low and high edges, and entirely outside the volume.
    for center in [(8, 9, 10), (1, 0, 2), (15, 17, 19), (-5, 9, 10), (8, 30, 10)]:
        out = place(jnp.array(center))
        assert out.dtype == jnp.float32 and out.shape == shape
        np.testing.assert_allclose(
            np.asarray(out), reference_place(prior, center, shape, 9, 1e-3), rtol=1e-6
        )


@pytest.mark.parametrize("extent", [1, 3, 4, 11])
def test_place_prior_stretches_the_bins_over_the_extent(rng, extent):
    # Fewer slices than bins (extent 1, 3) skips bins; more (4, 11) repeats them.
    prior = rng.uniform(size=(5, 4, 4)).astype(np.float32)
    shape, center = (9, 8, 14), (4, 3, 6)
    out = place_prior(prior, jnp.array(center), shape, extent, floor=0.0)
    np.testing.assert_allclose(
        np.asarray(out), reference_place(prior, center, shape, extent, 0.0), rtol=1e-6
    )


def test_place_prior_inverts_build_for_one_volume():
    # One labelled volume, one bin per slice and odd extents: the window covers the organ's
    # bounding box exactly and placing the prior at the organ's centre gives back its mask.
    shape = (20, 18, 16)
    mask = ellipsoid(shape, (12, 6, 9), (4.5, 3.2, 5.6))  # extents 9, 7, 11
    prior = build_spatial_prior([mask], bins=11)
    assert prior.shape == (9, 7, 11)
    placed = place_prior(prior, jnp.array([12, 6, 9]), shape, 11, floor=0.0)
    np.testing.assert_array_equal(np.asarray(placed), mask.astype(np.float32))


def test_place_prior_invalid_arguments_raise():
    prior = np.ones((3, 3, 2), np.float32)
    center = jnp.array([1, 1, 1])
    with pytest.raises(ValueError, match=r"\(Wp, Hp, B\)"):
        place_prior(prior[0], center, (4, 4, 4), 2)
    with pytest.raises(ValueError, match=r"integer array of shape \(3,\)"):
        place_prior(prior, jnp.array([1.0, 1.0, 1.0]), (4, 4, 4), 2)
    with pytest.raises(ValueError, match=r"integer array of shape \(3,\)"):
        place_prior(prior, jnp.array([1, 1]), (4, 4, 4), 2)
    with pytest.raises(ValueError, match="extent must be"):
        place_prior(prior, center, (4, 4, 4), 0)
    with pytest.raises(ValueError, match="shape must be"):
        place_prior(prior, center, (4, 4), 2)
    with pytest.raises(ValueError, match="floor"):
        place_prior(prior, center, (4, 4, 4), 2, floor=0.5)


# --- prior_driven_softmax / prior_driven_sigmoid --------------------------------------------------


def test_prior_driven_softmax_is_the_renormalised_product(rng):
    logits = rng.normal(scale=3.0, size=(6, 5, 4, 3)).astype(np.float32)
    prior = rng.uniform(size=logits.shape).astype(np.float32)
    prior[0, 0, 0] = [0.0, 0.3, 1.0]
    prior[1, 0, 0] = [0.0, 0.0, 0.2]
    product = np.exp(logits.astype(np.float64)) * prior
    expected = product / product.sum(-1, keepdims=True)
    out = jax.jit(prior_driven_softmax)(logits, prior)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-7)


def test_prior_driven_softmax_with_uniform_prior_is_the_softmax(rng):
    logits = rng.normal(scale=3.0, size=(5, 4, 6, 3)).astype(np.float32)
    plain = np.asarray(jax.nn.softmax(logits, axis=-1))
    per_voxel = np.repeat(rng.uniform(0.01, 1.0, size=(5, 4, 6, 1)), 3, -1).astype(np.float32)
    for prior in (per_voxel, np.full(3, 0.2, np.float32), np.zeros((5, 4, 6, 3), np.float32)):
        np.testing.assert_allclose(
            np.asarray(prior_driven_softmax(logits, prior)), plain, rtol=1e-5, atol=1e-7
        )


def numpy_sigmoid(x):
    """``1 / (1 + exp(-x))`` in float64 without overflow."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def test_prior_driven_sigmoid_is_bayes_rule(rng):
    # sigmoid(l + log p - log(1 - p)) = s p / (s p + (1 - s)(1 - p)) with s = sigmoid(l).
    logit = rng.normal(scale=3.0, size=(6, 5, 4)).astype(np.float32)
    p = rng.uniform(size=logit.shape).astype(np.float32)
    s = numpy_sigmoid(logit.astype(np.float64))
    expected = s * p / (s * p + (1.0 - s) * (1.0 - p))
    out = jax.jit(prior_driven_sigmoid)(logit, p)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(
        np.asarray(prior_driven_sigmoid(logit, 0.5)), np.asarray(jax.nn.sigmoid(logit))
    )


def test_prior_driven_sigmoid_limits_at_zero_and_one():
    logit = jnp.array([-8.0, -1.0, 0.0, 2.0, 8.0])
    towards_zero = [1e-2, 1e-6, 1e-12, 1e-30, 0.0]
    towards_one = [1 - 2.0**-6, 1 - 2.0**-12, 1 - 2.0**-20, 1 - 2.0**-24, 1.0]
    low = np.stack([np.asarray(prior_driven_sigmoid(logit, p)) for p in towards_zero])
    high = np.stack([np.asarray(prior_driven_sigmoid(logit, p)) for p in towards_one])
    assert np.isfinite(low).all() and np.isfinite(high).all()
    assert (np.diff(low, axis=0) <= 0).all() and (np.diff(high, axis=0) >= 0).all()
    assert low[-1].max() < 1e-30  # 0 up to exp(-87 + 8)
    np.testing.assert_array_equal(high[-1], 1.0)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_prior_driven_gradients_are_finite_at_zero_and_one(rng, p):
    logit = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    prior = jnp.full((4, 5), p)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(prior_driven_sigmoid(x, prior))))(logit)
    assert np.isfinite(np.asarray(grad)).all()
    logits = jnp.asarray(rng.normal(size=(4, 5, 3)), jnp.float32)
    target = jnp.asarray(rng.uniform(size=(4, 5, 3)), jnp.float32)
    prior = jnp.broadcast_to(jnp.array([p, 1.0 - p, p]), (4, 5, 3))

    def loss(x):
        return jnp.sum((prior_driven_softmax(x, prior) - target) ** 2)

    grad = np.asarray(jax.jit(jax.grad(loss))(logits))
    assert np.isfinite(grad).all()
    if p == 0.0:  # class 1 holds all the probability whatever the logits: the loss is flat
        np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    else:  # classes 0 and 2 share it
        assert np.abs(grad[..., [0, 2]]).min() > 0


def test_prior_driven_activations_invalid_arguments_raise():
    with pytest.raises(ValueError, match=r"broadcast to the shape of logits \(4, 3\)"):
        prior_driven_softmax(jnp.zeros((4, 3)), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match=r"broadcast to the shape of logit \(4,\)"):
        prior_driven_sigmoid(jnp.zeros(4), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="floating"):
        prior_driven_sigmoid(jnp.zeros(4, jnp.int32), 0.5)


# --- locate_prior -------------------------------------------------------------------------------


def reference_locate(probs, reference, search, eps=1e-6):
    """Centroid, then the KL of every translation by explicit loops; float64."""
    grids = np.indices(probs.shape)
    coarse = [int(np.floor((grids[a] * probs).sum() / probs.sum() + 0.5)) for a in range(3)]
    size = reference.shape
    r = np.clip(reference.astype(np.float64), eps, 1 - eps)
    costs = {}
    for t in itertools.product(*(range(-s, s + 1) for s in search)):
        start = [coarse[a] + t[a] - size[a] // 2 for a in range(3)]
        q = np.zeros(size)
        for i, j, k in itertools.product(*map(range, size)):
            x, y, z = start[0] + i, start[1] + j, start[2] + k
            if 0 <= x < probs.shape[0] and 0 <= y < probs.shape[1] and 0 <= z < probs.shape[2]:
                q[i, j, k] = probs[x, y, z]
        q = np.clip(q, eps, 1 - eps)
        costs[t] = np.sum(r * np.log(r / q) + (1 - r) * np.log((1 - r) / (1 - q)))
    ranked = sorted(costs, key=costs.get)
    best = ranked[0]
    return np.add(coarse, best), costs[ranked[1]] - costs[best]


@pytest.mark.parametrize("search", [2, (1, 3, 0)])
def test_locate_prior_matches_loop_reference(rng, search):
    shape = (16, 18, 20)
    probs = ndi.gaussian_filter(blob_labels(rng, shape, 0.06).astype(np.float64), 1.0)
    probs = np.clip(probs + 0.05 * rng.uniform(size=shape), 0.0, 1.0).astype(np.float32)
    reference = rng.uniform(size=(7, 6, 5)).astype(np.float32) ** 3
    expected, margin = reference_locate(probs, reference, search if search != 2 else (2, 2, 2))
    assert margin > 1e-2  # a unique minimum, far above float32 rounding
    center = jax.jit(lambda p: locate_prior(p, reference, search=search))(probs)
    assert center.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(center), expected)


def test_locate_prior_recovers_a_translated_organ_under_jit():
    shape, radii = (24, 24, 24), (5.0, 3.0, 4.0)
    # The reference: a labelled organ's mask in the window centred on it (extents 11, 7, 9).
    reference = ellipsoid((11, 7, 9), (5, 3, 4), radii).astype(np.float32)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def locate(probs):
        return locate_prior(probs, reference, search=3), locate_prior(probs, reference, search=0)

    chex.clear_trace_counter()
    for true_center, distractor in [((13, 9, 12), (3, 20, 3)), ((7, 15, 16), (20, 3, 20))]:
        probs = ellipsoid(shape, true_center, radii, softness=0.1)
        # A false positive far away pulls the centroid a voxel or two off the organ.
        probs += 0.9 * ellipsoid(shape, distractor, (1.5, 1.5, 1.5))
        found, coarse = locate(jnp.asarray(probs, jnp.float32))
        assert tuple(np.asarray(coarse)) != true_center
        np.testing.assert_array_equal(np.asarray(found), true_center)


def test_locate_prior_of_an_empty_prediction_is_the_volume_centre():
    reference = np.full((3, 3, 3), 0.5, np.float32)
    center = locate_prior(jnp.zeros((9, 10, 11)), reference, search=0)
    np.testing.assert_array_equal(np.asarray(center), [4, 5, 5])


def test_locate_prior_invalid_arguments_raise():
    with pytest.raises(ValueError, match=r"probs must have shape \(X, Y, Z\)"):
        locate_prior(jnp.zeros((4, 4)), jnp.zeros((2, 2, 2)), search=1)
    with pytest.raises(ValueError, match=r"reference must have shape \(Wr, Hr, Dr\)"):
        locate_prior(jnp.zeros((4, 4, 4)), jnp.zeros((2, 2)), search=1)
    with pytest.raises(ValueError, match="search must be 3 non-negative ints"):
        locate_prior(jnp.zeros((4, 4, 4)), jnp.zeros((2, 2, 2)), search=(1, 1))
    with pytest.raises(ValueError, match="search must be 3 non-negative ints"):
        locate_prior(jnp.zeros((4, 4, 4)), jnp.zeros((2, 2, 2)), search=-1)


# --- select_pseudo_labels -----------------------------------------------------------------------


def reference_selection(probs, k, k_background):
    """Rank by (probability descending, flat index ascending); organ first, background last."""
    flat = probs.reshape(-1).tolist()
    ranking = sorted(range(len(flat)), key=lambda i: (-flat[i], i))
    label = np.zeros(len(flat), np.int32)
    weight = np.zeros(len(flat), np.float32)
    label[ranking[:k]] = 1
    weight[ranking[:k]] = 1
    weight[ranking[len(flat) - k_background :]] = 1
    return label.reshape(probs.shape), weight.reshape(probs.shape)


@pytest.mark.parametrize("levels", [None, 5])
@pytest.mark.parametrize(("k", "k_background"), [(37, 0), (200, 500), (0, 64)])
def test_select_pseudo_labels_matches_loop_reference(rng, levels, k, k_background):
    probs = rng.uniform(size=(16, 12, 10)).astype(np.float32)
    if levels is not None:  # many ties: 5 distinct values
        probs = np.floor(probs * levels) / levels
    select = jax.jit(select_pseudo_labels, static_argnames=("k", "k_background"))
    label, weight = select(probs, k=k, k_background=k_background)
    expected_label, expected_weight = reference_selection(probs, k, k_background)
    assert label.dtype == jnp.int32 and weight.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(label), expected_label)
    np.testing.assert_array_equal(np.asarray(weight), expected_weight)
    label, weight = np.asarray(label).astype(bool), np.asarray(weight).astype(bool)
    assert label.sum() == k and weight.sum() == k + k_background
    if 0 < k:  # the top k by probability
        assert probs[label].min() >= probs[~label].max()


def test_select_pseudo_labels_breaks_ties_by_flat_index():
    probs = np.full((2, 3), 0.5, np.float32)
    label, weight = select_pseudo_labels(probs, 2, k_background=3)
    np.testing.assert_array_equal(np.asarray(label), [[1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(np.asarray(weight), [[1, 1, 0], [1, 1, 1]])


def test_select_pseudo_labels_batched_with_vmap(rng):
    probs = rng.uniform(size=(3, 8, 8, 8)).astype(np.float32)
    labels, weights = jax.vmap(lambda p: select_pseudo_labels(p, 10, k_background=20))(probs)
    for p, label, weight in zip(probs, labels, weights):
        expected_label, expected_weight = reference_selection(p, 10, 20)
        np.testing.assert_array_equal(np.asarray(label), expected_label)
        np.testing.assert_array_equal(np.asarray(weight), expected_weight)


def test_select_pseudo_labels_invalid_arguments_raise():
    probs = jnp.zeros((4, 4, 4))
    with pytest.raises(ValueError, match="select at most the 64 voxels"):
        select_pseudo_labels(probs, 40, k_background=25)
    with pytest.raises(ValueError, match="non-negative"):
        select_pseudo_labels(probs, -1)
    with pytest.raises(ValueError, match="floating"):
        select_pseudo_labels(jnp.zeros((4, 4, 4), jnp.int32), 1)
