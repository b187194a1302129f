"""Signed distance maps: exactness against the SASSNet/DTML reference ``compute_sdf``."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage as ndi

from jaxseg.shape import sdm_to_mask, signed_distance_map

# The output is float32 and the reference float64: normalised values lie in [-1, 1], so float32
# rounding of the distances and the division stays below 1e-6 in absolute terms.
ATOL = 1e-6
# Unnormalised distances are in mm, up to tens of mm: compare them relatively.
RTOL = 1e-6
# Few shapes, so that few programs are compiled.
SHAPE_3D = (24, 20, 16)
SHAPE_2D = (40, 36)


def reference_sdm(mask, spacing=None):
    """The ``compute_sdf`` of the SASSNet/DTML code for one mask, float64 (NaN when full)."""
    find_boundaries = pytest.importorskip("skimage.segmentation").find_boundaries
    posmask = np.asarray(mask).astype(bool)
    if not posmask.any():
        return np.zeros(posmask.shape)
    negmask = ~posmask
    posdis = ndi.distance_transform_edt(posmask, sampling=spacing)
    negdis = ndi.distance_transform_edt(negmask, sampling=spacing)
    boundary = find_boundaries(posmask, mode="inner")
    sdf = (negdis - negdis.min()) / (negdis.max() - negdis.min()) - (posdis - posdis.min()) / (
        posdis.max() - posdis.min()
    )
    sdf[boundary] = 0
    return sdf


def reference_signed_distance(mask, spacing=None):
    """``negdis - posdis`` from scipy, float64."""
    mask = np.asarray(mask).astype(bool)
    posdis = ndi.distance_transform_edt(mask, sampling=spacing)
    negdis = ndi.distance_transform_edt(~mask, sampling=spacing)
    return negdis - posdis


def smooth_blobs(rng, shape, fraction):
    """Smooth random blobs covering about ``fraction`` of the array, often cut by its edges."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma=3.0)
    return field > np.quantile(field, 1.0 - fraction)


def assert_matches_reference(mask, out, spacing=None):
    out = np.asarray(out)
    assert out.dtype == np.float32
    assert out.shape == mask.shape
    np.testing.assert_allclose(out, reference_sdm(mask, spacing), rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("shape", "spacings"),
    [
        (SHAPE_3D, [None, (2.5, 0.625, 0.625), (1.0, 1.3, 0.7)]),
        (SHAPE_2D, [None, (0.5, 1.5)]),
        ((64,), [None, (0.3,)]),
    ],
)
def test_matches_reference_on_blobs(rng, shape, spacings):
    jitted = jax.jit(lambda m, s: signed_distance_map(m, spacing=s))
    for spacing, fraction in itertools.product(spacings, (0.08, 0.3, 0.7)):
        mask = smooth_blobs(rng, shape, fraction)
        assert_matches_reference(mask, signed_distance_map(mask, spacing=spacing), spacing)
        traced_spacing = np.ones(len(shape)) if spacing is None else np.array(spacing)
        assert_matches_reference(mask, jitted(mask, traced_spacing), spacing)


@pytest.mark.parametrize("density", [0.02, 0.5])
def test_matches_reference_on_random_voxels(rng, density):
    # Scattered voxels give far, tied and diagonal nearest neighbours: a stress test for the
    # exact lower envelope.
    mask = rng.random(SHAPE_3D) < density
    assert_matches_reference(mask, signed_distance_map(mask))
    spacing = (0.8, 1.9, 1.1)
    assert_matches_reference(mask, signed_distance_map(mask, spacing=spacing), spacing)


def test_vmapped_batch_matches_per_sample_reference(rng):
    shape = SHAPE_3D
    masks = np.stack(
        [
            smooth_blobs(rng, shape, 0.1),
            smooth_blobs(rng, shape, 0.4),
            np.zeros(shape, bool),
            np.ones(shape, bool),
        ]
    )
    out = np.asarray(jax.jit(jax.vmap(signed_distance_map))(masks))
    for mask, sdm in zip(masks[:2], out[:2], strict=True):
        assert_matches_reference(mask, sdm)
    np.testing.assert_array_equal(out[2:], 0.0)


def test_per_sample_spacing_can_be_vmapped(rng):
    shape = SHAPE_3D
    masks = np.stack([smooth_blobs(rng, shape, 0.2) for _ in range(2)])
    spacings = np.array([[1.0, 1.0, 1.0], [2.0, 0.5, 0.75]], np.float32)
    out = jax.vmap(lambda m, s: signed_distance_map(m, spacing=s))(masks, spacings)
    for mask, spacing, sdm in zip(masks, spacings, out, strict=True):
        assert_matches_reference(mask, sdm, tuple(spacing))


@pytest.mark.parametrize("spacing", [None, (1.5, 0.5, 0.8)])
def test_unnormalized_is_signed_euclidean_distance(rng, spacing):
    mask = smooth_blobs(rng, SHAPE_3D, 0.15)
    out = np.asarray(signed_distance_map(mask, spacing=spacing, normalize=False))
    np.testing.assert_allclose(out, reference_signed_distance(mask, spacing), rtol=RTOL)
    # No boundary zeroing: the sign alone recovers the mask.
    np.testing.assert_array_equal(out < 0, mask)
    assert np.all(out != 0)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("fill", [False, True])
def test_empty_and_full_masks_give_zeros(fill, normalize):
    for shape in [SHAPE_3D, SHAPE_2D]:
        mask = np.full(shape, fill)
        out = np.asarray(signed_distance_map(mask, normalize=normalize))
        assert out.shape == shape
        np.testing.assert_array_equal(out, 0.0)
    one_hot = np.zeros((*SHAPE_3D, 3), np.float32)
    one_hot[..., 1] = 1.0
    out = np.asarray(signed_distance_map(one_hot, normalize=normalize, one_hot=True))
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("point", [(4, 5, 3), (0, 0, 0), (23, 0, 15)])
def test_single_voxel_has_closed_form(point):
    shape = SHAPE_3D
    spacing = np.array([1.5, 0.5, 2.0])
    mask = np.zeros(shape, bool)
    mask[point] = True
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    distance = np.sqrt((((grid - np.array(point)) * spacing) ** 2).sum(-1))
    # Inside, the nearest background voxel is the neighbour along the finest axis (0.5 mm).
    expected = np.where(mask, -0.5, distance)
    out = signed_distance_map(mask, spacing=tuple(spacing), normalize=False)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=RTOL)
    # Normalised: the voxel is its own inner boundary, the outside is divided by its maximum.
    normalized = np.asarray(signed_distance_map(mask, spacing=tuple(spacing)))
    np.testing.assert_allclose(
        normalized, np.where(mask, 0.0, distance / distance.max()), atol=ATOL
    )
    assert_matches_reference(mask, normalized, tuple(spacing))


def test_half_space_touching_array_edges():
    shape, k = SHAPE_3D, 5
    mask = np.zeros(shape, bool)
    mask[:k] = True  # touches five faces of the array
    x = np.arange(shape[0])[:, None, None] * np.ones(shape)
    expected = np.where(mask, -(k - x), x - k + 1)
    out = np.asarray(signed_distance_map(mask, normalize=False))
    np.testing.assert_array_equal(out, expected)
    normalized = np.asarray(signed_distance_map(mask))
    # Only the layer next to the background is boundary; the array faces are not.
    np.testing.assert_array_equal(normalized == 0, x == k - 1)
    assert normalized.min() == -1.0 and normalized.max() == 1.0
    assert_matches_reference(mask, normalized)


def test_digital_ball_distances():
    radius = 5
    center = np.array([12, 10, 7])
    offsets = np.indices(SHAPE_3D).transpose(1, 2, 3, 0) - center
    mask = (offsets**2).sum(-1) <= radius**2
    out = np.asarray(signed_distance_map(mask, normalize=False))
    # Outside along an axis, the nearest ball voxel is the pole: the distance is j exactly.
    for axis, sign in itertools.product(range(3), (1, -1)):
        point = center.copy()
        for j in itertools.count(1):
            point[axis] = center[axis] + sign * (radius + j)
            if not 0 <= point[axis] < SHAPE_3D[axis]:
                break
            assert out[tuple(point)] == j
    # At the centre, the nearest background voxel is the shortest lattice vector outside it.
    lattice = np.arange(-radius - 1, radius + 2)
    norms = (np.stack(np.meshgrid(lattice, lattice, lattice)) ** 2).sum(0)
    assert out[tuple(center)] == pytest.approx(-np.sqrt(norms[norms > radius**2].min()), rel=1e-7)
    # Signs: negative exactly on the ball.
    np.testing.assert_array_equal(out < 0, mask)


def test_one_hot_transforms_each_channel(rng):
    shape = SHAPE_3D
    labels = np.digitize(ndi.gaussian_filter(rng.standard_normal(shape), 3.0), [-0.1, 0.1])
    one_hot = np.eye(3, dtype=np.float32)[labels]  # (*S, 3)
    out = np.asarray(signed_distance_map(one_hot, one_hot=True))
    assert out.shape == (*shape, 3)
    for c in range(3):
        assert_matches_reference(labels == c, out[..., c])
        np.testing.assert_array_equal(out[..., c], np.asarray(signed_distance_map(labels == c)))


def test_nonzero_is_foreground(rng):
    mask = smooth_blobs(rng, SHAPE_2D, 0.3)
    expected = np.asarray(signed_distance_map(mask))
    labels = mask.astype(np.int32) * 7
    np.testing.assert_array_equal(np.asarray(signed_distance_map(labels)), expected)
    np.testing.assert_array_equal(
        np.asarray(signed_distance_map(mask.astype(np.float32))), expected
    )


def test_gradient_is_zero(rng):
    mask = smooth_blobs(rng, SHAPE_3D, 0.3).astype(np.float32)
    grad = jax.grad(lambda m: jnp.sum(signed_distance_map(m)))(mask)
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_invalid_arguments_raise():
    mask = np.zeros((6, 5, 4), bool)
    with pytest.raises(ValueError, match=r"spacing must have shape \(3,\)"):
        signed_distance_map(mask, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"spacing must have shape \(2,\)"):
        signed_distance_map(mask, spacing=(1.0, 1.0, 1.0), one_hot=True)
    with pytest.raises(ValueError, match="positive"):
        signed_distance_map(mask, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"\(\*S, C\)"):
        signed_distance_map(np.zeros(4, bool), one_hot=True)
    with pytest.raises(ValueError, match=r"\(\*S\)"):
        signed_distance_map(np.zeros((3, 0, 2), bool))
    with pytest.raises(ValueError, match=r"\(\*S\)"):
        signed_distance_map(np.bool_(True))
    with pytest.raises(ValueError, match=r"spacing must have shape \(3,\)"):
        jax.jit(lambda m, s: signed_distance_map(m, spacing=s))(mask, jnp.ones(2))


def test_traces_once_for_repeated_shapes(rng):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(mask):
        return signed_distance_map(mask, spacing=(1.0, 2.0, 0.5))

    chex.clear_trace_counter()
    for fraction in (0.1, 0.2, 0.3):
        step(smooth_blobs(rng, SHAPE_3D, fraction))


def numpy_sigmoid(x):
    """``1 / (1 + exp(-x))`` in float64 without overflow."""
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def test_sdm_to_mask_is_a_steep_sigmoid(rng):
    sdm = rng.uniform(-1.0, 1.0, size=(5, 6, 7)).astype(np.float32)
    sdm[0, 0, :3] = [0.0, 1e-3, -1e-3]
    for k in (1500.0, 3.0):
        np.testing.assert_allclose(
            np.asarray(sdm_to_mask(sdm, k)), numpy_sigmoid(-k * sdm), rtol=1e-6, atol=1e-7
        )
    np.testing.assert_allclose(
        np.asarray(sdm_to_mask(sdm)), numpy_sigmoid(-1500.0 * sdm), rtol=1e-6, atol=1e-7
    )
    assert float(sdm_to_mask(jnp.float32(0.0))) == 0.5


def test_sdm_to_mask_round_trip(rng):
    find_boundaries = pytest.importorskip("skimage.segmentation").find_boundaries
    mask = smooth_blobs(rng, SHAPE_3D, 0.12)
    recovered = np.asarray(sdm_to_mask(signed_distance_map(mask))) > 0.5
    boundary = find_boundaries(mask, mode="inner")
    np.testing.assert_array_equal(recovered[~boundary], mask[~boundary])
    assert not recovered[boundary].any()  # sdm == 0 there: exactly 0.5
    exact = np.asarray(sdm_to_mask(signed_distance_map(mask, normalize=False))) > 0.5
    np.testing.assert_array_equal(exact, mask)


@pytest.mark.parametrize("scale", [1e-30, 1e-6, 1e6, 1e30])
def test_sdm_at_extreme_voxel_sizes_is_the_scaled_one(scale):
    """Voxel sizes far from 1: the normalised SDM does not change, the plain one scales, and
    nothing overflows or underflows (both are checked against scipy at a unit scale)."""
    mask = np.zeros((12, 10, 9), bool)
    mask[3:9, 2:7, 2:6] = True
    spacing = np.array([1.0, 0.5, 2.0])
    inside = ndi.distance_transform_edt(mask, sampling=spacing)
    outside = ndi.distance_transform_edt(~mask, sampling=spacing)
    plain = signed_distance_map(mask, spacing=spacing * scale, normalize=False)
    np.testing.assert_allclose(plain / scale, outside - inside, rtol=1e-5)
    unit = signed_distance_map(mask, spacing=spacing)
    np.testing.assert_allclose(signed_distance_map(mask, spacing=spacing * scale), unit, atol=1e-6)


def test_sdm_refuses_an_invalid_spacing_and_flags_a_traced_one_with_nan():
    """Not finite, not positive, or two voxel sizes more than 1e6 apart (1e30 against 1 made
    the in-plane squared distances underflow to 0 and the SDM NaN): refused, or all NaN when
    traced; 1e6 itself is valid and matches scipy."""
    mask = np.zeros((6, 6), bool)
    mask[2:4, 1:5] = True
    for bad in ([np.inf, 1.0], [np.nan, 1.0], [0.0, 1.0], [1e30, 1.0], [1.0, 1e-30], [2e6, 1]):
        with pytest.raises(ValueError, match="finite, positive and within a factor 1e"):
            signed_distance_map(mask, spacing=bad)
    traced = jax.jit(lambda s: signed_distance_map(mask, spacing=s))
    for bad in ([np.inf, 1.0], [1e30, 1.0]):
        assert np.all(np.isnan(traced(jnp.array(bad))))
    assert np.all(np.isfinite(traced(jnp.array([3.0, 1.0]))))
    plain = signed_distance_map(mask, spacing=[1e6, 1.0], normalize=False)
    spacing = (1e6, 1.0)
    expected = ndi.distance_transform_edt(~mask, sampling=spacing) - ndi.distance_transform_edt(
        mask, sampling=spacing
    )
    np.testing.assert_allclose(plain, expected, rtol=1e-5)
