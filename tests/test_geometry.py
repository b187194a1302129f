"""jaxseg.geometry against scipy, analytic solutions and its own algebraic identities."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import ndimage
from scipy.linalg import expm

from jaxseg.geometry import (
    affine_disp,
    affine_matrix,
    compose,
    folding_fraction,
    identity_grid,
    integrate_svf,
    jacobian_determinant,
    resize_field,
    warp,
)

SHAPES = [(13, 11), (9, 10, 11)]


def smooth_field(rng, shape, amplitude, sigma):
    """A smooth random field ``(*shape, N)`` with max abs value ``amplitude``."""
    comps = [ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap") for _ in shape]
    field = np.stack(comps, axis=-1)
    return (field / np.abs(field).max() * amplitude).astype(np.float32)


def scipy_warp(image, disp, order, mode):
    coords = np.moveaxis(np.asarray(identity_grid(disp.shape[:-1])) + disp, -1, 0)
    return ndimage.map_coordinates(image, coords, order=order, mode=mode)


def test_identity_grid_values():
    grid = np.asarray(identity_grid((2, 3, 4)))
    assert grid.shape == (2, 3, 4, 3)
    assert grid.dtype == np.float32
    np.testing.assert_array_equal(grid[1, 2, 3], [1, 2, 3])
    np.testing.assert_array_equal(grid[..., 1], np.broadcast_to(np.arange(3)[:, None], (2, 3, 4)))
    with pytest.raises(ValueError, match="positive"):
        identity_grid((3, 0))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("jit", [True, False])
def test_warp_linear_border_matches_scipy(rng, shape, jit):
    image = rng.normal(size=shape).astype(np.float32)
    disp = (rng.normal(size=(*shape, len(shape))) * 4).astype(np.float32)  # many out of range
    if jit:
        out = warp(image, disp)
    else:
        with jax.disable_jit():
            out = warp(image, disp)
    np.testing.assert_allclose(out, scipy_warp(image, disp, 1, "nearest"), atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_warp_linear_zeros_matches_scipy_grid_constant(rng, shape):
    image = rng.normal(size=shape).astype(np.float32)
    disp = (rng.normal(size=(*shape, len(shape))) * 4).astype(np.float32)
    out = warp(image, disp, mode="zeros")
    np.testing.assert_allclose(out, scipy_warp(image, disp, 1, "grid-constant"), atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_warp_nearest_matches_scipy_and_keeps_dtype(rng, shape):
    labels = rng.integers(0, 5, size=shape).astype(np.int32)
    disp = (rng.normal(size=(*shape, len(shape))) * 3).astype(np.float32)
    out = warp(labels, disp, order=0)
    assert out.dtype == jnp.int32
    np.testing.assert_array_equal(out, scipy_warp(labels, disp, 0, "nearest"))
    zeros = warp(labels, disp, order=0, mode="zeros")
    np.testing.assert_array_equal(zeros, scipy_warp(labels, disp, 0, "grid-constant"))


def test_warp_channels_and_other_grid(rng):
    image = rng.normal(size=(8, 9, 10, 2)).astype(np.float32)
    disp = (rng.normal(size=(5, 6, 7, 3)) * 2 + 1).astype(np.float32)  # a smaller output grid
    out = warp(image, disp)
    assert out.shape == (5, 6, 7, 2)
    for c in range(2):
        np.testing.assert_allclose(
            out[..., c], scipy_warp(image[..., c], disp, 1, "nearest"), atol=1e-5
        )


def test_warp_vmap_equals_loop(rng):
    images = rng.normal(size=(3, 7, 8, 9)).astype(np.float32)
    disps = rng.normal(size=(3, 7, 8, 9, 3)).astype(np.float32)
    batched = jax.vmap(warp)(images, disps)
    for b in range(3):
        np.testing.assert_allclose(batched[b], warp(images[b], disps[b]), atol=1e-6)


def test_warp_errors():
    with pytest.raises(ValueError, match=r"\(\*S, N\)"):
        warp(jnp.zeros((4, 4)), jnp.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match=r"len\(S_in\) = 2"):
        warp(jnp.zeros((4, 4, 4, 4, 4)), jnp.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="order"):
        warp(jnp.zeros((4, 4)), jnp.zeros((4, 4, 2)), order=3)
    with pytest.raises(ValueError, match="mode"):
        warp(jnp.zeros((4, 4)), jnp.zeros((4, 4, 2)), mode="reflect")


def test_warp_traces_once_per_shape(rng):
    before = warp._cache_size()
    for _ in range(3):
        warp(
            rng.normal(size=(6, 7, 8)).astype(np.float32),
            rng.normal(size=(6, 7, 8, 3)).astype(np.float32),
        )
    assert warp._cache_size() == before + 1


def test_traced_once_inside_user_jit(rng):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(v, img):
        return warp(img, integrate_svf(v)).sum()

    for _ in range(3):
        step(
            rng.normal(size=(6, 6, 6, 3)).astype(np.float32),
            rng.normal(size=(6, 6, 6)).astype(np.float32),
        )


def off_lattice_field(rng, shape):
    """Displacements whose sample points stay inside the grid and >= 0.2 voxel from lattice
    planes, so that finite differences never cross a kink of linear interpolation."""
    grid = np.asarray(identity_grid(shape))
    upper = np.asarray(shape) - 1
    base = rng.integers(0, upper, size=grid.shape)  # lower corner of the target cell
    target = base + rng.uniform(0.2, 0.8, size=grid.shape)
    return target - grid


def test_warp_gradients(rng):
    shape = (5, 6, 4)
    with jax.enable_x64(True):
        image = jnp.asarray(rng.normal(size=shape))
        disp = jnp.asarray(off_lattice_field(rng, shape))
        check_grads(lambda i, d: warp(i, d), (image, disp), order=1, modes=("fwd", "rev"), eps=1e-4)
        check_grads(
            lambda i, d: warp(i, d, mode="zeros"), (image, disp), order=1, modes=("rev",), eps=1e-4
        )


def test_integrate_svf_gradients(rng):
    with jax.enable_x64(True):
        v = jnp.asarray(smooth_field(rng, (6, 6, 6), 0.8, 1.5), jnp.float64)
        # Random cotangent weights so the check is not a plain sum.
        w = jnp.asarray(rng.normal(size=(6, 6, 6, 3)))
        check_grads(
            lambda v: (integrate_svf(v, steps=3) * w).sum(), (v,), order=1, modes=("rev",), eps=1e-5
        )


def linear_svf(shape, matrix):
    centre = (np.asarray(shape) - 1) / 2
    points = np.asarray(identity_grid(shape), np.float64) - centre
    return points, points @ matrix.T


@pytest.mark.parametrize("ndim", [2, 3])
def test_integrate_linear_svf_converges_to_expm(ndim):
    rng = np.random.default_rng(ndim)
    matrix = rng.normal(size=(ndim, ndim)) * 0.04
    shape = (40,) * ndim
    points, v = linear_svf(shape, matrix)
    exact = points @ (expm(matrix) - np.eye(ndim)).T
    interior = (slice(10, 30),) * ndim  # the flow of interior points never leaves the grid
    steps = np.arange(0, 9, 2)
    errors = []
    for s in steps:
        with jax.enable_x64(True):
            disp = np.asarray(integrate_svf(jnp.asarray(v), steps=int(s)))
        errors.append(np.abs(disp - exact)[interior].max())
    # Linear interpolation is exact on a linear field: the only error is the first-order
    # step exp(v / 2^s) ~ id + v / 2^s, so it falls as 2^-s.
    slope = np.polyfit(steps, np.log2(errors), 1)[0]
    assert -1.1 < slope < -0.9, (errors, slope)
    assert errors[-1] < 1e-3 * np.abs(exact[interior]).max()


def test_integrate_svf_inverse_consistency_64():
    rng = np.random.default_rng(1)
    v = jnp.asarray(smooth_field(rng, (64, 64, 64), 2.0, 6.0))
    fwd, inv = integrate_svf(v), integrate_svf(-v)
    assert 1.9 < float(jnp.abs(fwd).max()) < 2.1
    centre = np.asarray(identity_grid((64,) * 3)) - 31.5
    mask = np.linalg.norm(centre, axis=-1) < 24
    for residual in (compose(fwd, inv), compose(inv, fwd)):
        mice = np.linalg.norm(np.asarray(residual), axis=-1)[mask].mean()
        assert mice < 0.05
    assert float(folding_fraction(fwd)) == 0.0


def test_integrate_zero_steps_and_errors():
    v = jnp.ones((4, 5, 2))
    np.testing.assert_array_equal(integrate_svf(v, steps=0), v)
    with pytest.raises(ValueError, match="steps"):
        integrate_svf(v, steps=-1)
    with pytest.raises(ValueError, match="velocity"):
        integrate_svf(jnp.ones((4, 5, 3)))


def test_compose_matches_sequential_warps(rng):
    shape = (24, 24, 24)
    a, b = smooth_field(rng, shape, 2.0, 4.0), smooth_field(rng, shape, 2.0, 4.0)
    image = ndimage.gaussian_filter(rng.normal(size=shape), 3).astype(np.float32)
    twice = warp(warp(image, a), b)
    interior = (slice(4, -4),) * 3

    def error(disp):
        return np.abs(np.asarray(warp(image, disp) - twice))[interior].max()

    # Only the interpolation of the intermediate image differs; the wrong order of composition
    # or a plain sum of the fields is several times further off.
    assert error(compose(a, b)) < 0.1 * np.abs(np.asarray(twice) - image)[interior].max()
    assert error(compose(a, b)) < 0.4 * min(error(compose(b, a)), error(a + b))
    np.testing.assert_allclose(compose(a, jnp.zeros_like(a)), a, atol=1e-6)
    np.testing.assert_allclose(compose(jnp.zeros_like(b), b), b, atol=1e-6)


@pytest.mark.parametrize(("old", "new"), [((8, 6, 5), (16, 12, 10)), ((7, 9), (16, 13))])
def test_resize_field_matches_scipy(rng, old, new):
    disp = rng.normal(size=(*old, len(old))).astype(np.float32)
    out = np.asarray(resize_field(disp, new))
    # Independent reference: voxel-centre aligned coordinates, map_coordinates, rescaled values.
    axes = [np.clip((np.arange(n) + 0.5) * o / n - 0.5, 0, o - 1) for o, n in zip(old, new)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"))
    for i in range(len(old)):
        ref = ndimage.map_coordinates(disp[..., i], coords, order=1, mode="nearest")
        np.testing.assert_allclose(out[..., i], ref * new[i] / old[i], atol=1e-5)


def test_resize_field_matches_torch_interpolate(rng):
    torch = pytest.importorskip("torch")
    disp = rng.normal(size=(8, 6, 5, 3)).astype(np.float32)
    ref = (
        torch.nn.functional.interpolate(
            torch.from_numpy(disp).permute(3, 0, 1, 2)[None],
            scale_factor=2,
            mode="trilinear",
            align_corners=False,
        )[0]
        .permute(1, 2, 3, 0)
        .numpy()
        * 2
    )
    np.testing.assert_allclose(resize_field(disp, (16, 12, 10)), ref, atol=1e-5)


def test_affine_matrix_order_and_inverse():
    t, angle, s = np.array([2.0, -1.0]), 0.3, np.array([0.1, -0.2])
    m = np.asarray(affine_matrix(t, jnp.array([angle]), s))
    c, si = np.cos(angle), np.sin(angle)
    expected = (
        np.diag([*np.exp(s), 1])
        @ np.array([[c, -si, 0], [si, c, 0], [0, 0, 1]])
        @ np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1]])
    )
    np.testing.assert_allclose(m, expected, atol=1e-6)

    rot = np.asarray(affine_matrix(np.zeros(3), np.array([0.2, -0.4, 0.7]), np.zeros(3)))[:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="rotation"):
        affine_matrix(np.zeros(3), np.zeros(1), np.zeros(3))


def test_affine_disp_about_centre_and_invertible():
    shape = (21, 25, 19)
    m = affine_matrix(
        jnp.array([1.5, -2.0, 0.5]), jnp.array([0.1, -0.15, 0.2]), jnp.array([0.05, -0.05, 0.1])
    )
    disp = np.asarray(affine_disp(m, shape))
    centre = (np.asarray(shape) - 1) / 2
    x = np.array([3.0, 20.0, 7.0])
    expected = np.asarray(m)[:3, :3] @ (x - centre) + np.asarray(m)[:3, 3] + centre - x
    np.testing.assert_allclose(disp[3, 20, 7], expected, atol=1e-4)
    inverse = affine_disp(jnp.linalg.inv(m), shape)
    residual = np.linalg.norm(np.asarray(compose(disp, inverse)), axis=-1)
    assert residual[6:-6, 6:-6, 6:-6].max() < 1e-3
    # An affine map has a constant Jacobian determinant, exactly det(A) with these differences.
    det = np.asarray(jacobian_determinant(disp))
    np.testing.assert_allclose(det, np.linalg.det(np.asarray(m)[:3, :3]), rtol=1e-5)


def test_jacobian_of_smooth_field_is_second_order():
    errors = []
    for n in (32, 64):
        h = 1.0 / n
        grid = np.asarray(identity_grid((n, n)), np.float64) * h  # unit square
        amplitude = 0.1
        u0 = amplitude * np.sin(2 * np.pi * grid[..., 0]) * np.cos(2 * np.pi * grid[..., 1])
        u1 = amplitude * np.cos(2 * np.pi * grid[..., 0]) * np.sin(2 * np.pi * grid[..., 1])
        disp = np.stack([u0, u1], -1) / h  # in voxels
        k = 2 * np.pi * amplitude
        exact = (1 + k * np.cos(2 * np.pi * grid[..., 0]) * np.cos(2 * np.pi * grid[..., 1])) * (
            1 + k * np.cos(2 * np.pi * grid[..., 0]) * np.cos(2 * np.pi * grid[..., 1])
        ) - (k * np.sin(2 * np.pi * grid[..., 0]) * np.sin(2 * np.pi * grid[..., 1])) ** 2
        with jax.enable_x64(True):
            det = np.asarray(jacobian_determinant(jnp.asarray(disp)))
        errors.append(np.abs(det - exact)[1:-1, 1:-1].max())
    assert errors[0] < 0.05
    assert 3.5 < errors[0] / errors[1] < 4.5  # halving h quarters the error


def test_folding_fraction_counts_folded_voxels():
    n = 20
    grid = np.asarray(identity_grid((n, n)))
    disp = np.zeros((n, n, 2), np.float32)
    # Axis-0 map x -> -x on rows 5..14: determinant -1 where both neighbours are in the band.
    band = (grid[..., 0] >= 5) & (grid[..., 0] <= 14)
    disp[..., 0] = np.where(band, -2 * grid[..., 0] + 19, 0)
    det = np.asarray(jacobian_determinant(disp))
    assert np.all(det[6:14] == -1) and np.all(det[:4] == 1) and np.all(det[16:] == 1)
    assert float(folding_fraction(disp)) == pytest.approx(np.mean(det <= 0))
    assert float(folding_fraction(disp)) == pytest.approx(8 / 20)  # rows 6..13 fold


def test_folding_fraction_counts_non_finite_jacobians_as_folded():
    """One NaN displacement voxel makes the determinants of its neighbours NaN: counted as
    folded (central differences reach one voxel each way), not as valid."""
    disp = np.zeros((8, 8, 8, 3), np.float32)
    assert float(folding_fraction(disp)) == 0.0
    disp[4, 4, 4, 0] = np.nan
    det = np.asarray(jacobian_determinant(disp))
    assert float(folding_fraction(disp)) == pytest.approx(np.mean(~np.isfinite(det)))
    assert float(folding_fraction(disp)) > 0
    huge = 1e30 * np.indices((8, 8, 8)).transpose(1, 2, 3, 0).astype(np.float32)
    assert float(folding_fraction(huge)) == 1.0  # det = (1 + 1e30)^3 overflows everywhere


@pytest.mark.parametrize(
    "order,dtype,invalid",
    [
        (0, np.float32, np.nan),
        (0, np.int32, -(2**31)),
        (0, np.uint8, 255),
        (0, np.bool_, False),
        (1, np.float32, np.nan),
    ],
)
def test_warp_marks_non_finite_displacements_and_keeps_the_rest(order, dtype, invalid):
    """A NaN or infinite displacement names no point: NaN for a floating image, the dtype's
    extreme (never a label) for an integer one; every other voxel of a zero field keeps its own
    value (the identity, read off the array itself)."""
    labels = np.random.default_rng(0).integers(0, 3, (6, 7, 8)).astype(dtype)
    disp = np.zeros((6, 7, 8, 3), np.float32)
    disp[1, 2, 3, 0], disp[4, 4, 4, 2], disp[2, 5, 6, 1] = np.nan, np.inf, -np.inf
    out = np.asarray(warp(jnp.asarray(labels), jnp.asarray(disp), order=order))
    bad = ~np.isfinite(disp).all(-1)
    assert out.dtype == labels.dtype
    np.testing.assert_array_equal(out[~bad], labels[~bad])
    if dtype is np.float32:
        assert np.isnan(out[bad]).all()
    else:
        assert (out[bad] == invalid).all()


def test_integrate_svf_of_a_non_finite_velocity_is_all_nan():
    """A velocity field with one NaN (or infinite) voxel has no flow: the whole output is NaN,
    not a field that is NaN near that voxel and plausible elsewhere."""
    velocity = smooth_field(np.random.default_rng(1), (12, 12, 12), 2.0, 2.0)
    assert np.isfinite(np.asarray(integrate_svf(jnp.asarray(velocity)))).all()
    for value in (np.nan, np.inf):
        broken = velocity.copy()
        broken[6, 6, 6, 1] = value
        assert np.isnan(np.asarray(integrate_svf(jnp.asarray(broken)))).all()
