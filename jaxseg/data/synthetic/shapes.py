"""What the generators share: independent random streams per ingredient, smooth random fields,
the random deformation and affine of a phantom, and analytic shapes in template coordinates
(see :mod:`jaxseg.data.synthetic`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from jaxseg import geometry
from jaxseg.data.case import Case

# Stream tags: one per generator, so that equal seeds of different generators are independent.
_TAGS = {"la_like": 1, "abdominal_ct_like": 2, "cardiac_like": 3, "letter_b": 4}
_STREAMS = ("anatomy", "deformation", "texture", "noise", "clutter")


# --------------------------------------------------------------------------------------------
# Random streams, smooth random fields and the deformation
# --------------------------------------------------------------------------------------------


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_geometry(
    name: str, shape: Sequence[int], spacing: Sequence[float], ndim: int
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != ndim or min(shape) < 8:
        raise ValueError(f"{name}: shape must be {ndim} sizes >= 8, got {shape}")
    if len(spacing) != ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"{name}: spacing must be {ndim} positive mm values, got {spacing}")
    return shape, spacing


def _streams(name: str, seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence([_TAGS[name], seed]).spawn(len(_STREAMS))
    return {k: np.random.default_rng(c) for k, c in zip(_STREAMS, children, strict=True)}


@functools.cache
def _template_scale(shape: tuple[int, ...], spacing: tuple[float, ...], axes: int) -> np.ndarray:
    """Voxel size in template units: the template's [-1, 1] spans the smallest physical extent
    of the first ``axes`` axes."""
    spacing_arr = np.asarray(spacing)
    radius = float(np.min(np.asarray(shape[:axes]) * spacing_arr[:axes])) / 2
    return spacing_arr / radius


def _bspline_matrix(n_ctrl: int, n_out: int) -> np.ndarray:
    """``(n_out, n_ctrl)`` weights of uniform cubic B-spline approximation over ``n_out`` points.

    The control points are the B-spline coefficients (no prefilter), spread so that the output
    covers the parameter range ``[1, n_ctrl - 2]``; every output sample has 4 taps in range.
    """
    if n_ctrl < 4:
        raise ValueError(f"a cubic B-spline needs at least 4 control points, got {n_ctrl}")
    t = 1.0 + np.arange(n_out) * (n_ctrl - 3) / max(n_out - 1, 1)
    low = np.clip(np.floor(t), 1, n_ctrl - 3).astype(int)
    f = t - low
    weights = np.zeros((n_out, n_ctrl), np.float32)
    rows = np.arange(n_out)
    weights[rows, low - 1] = (1 - f) ** 3 / 6
    weights[rows, low] = (3 * f**3 - 6 * f**2 + 4) / 6
    weights[rows, low + 1] = (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6
    weights[rows, low + 2] = f**3 / 6
    return weights


def _bspline_upsample(ctrl: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Cubic B-spline with coefficients ``ctrl`` (``(*K)`` or ``(*K, C)``) sampled on ``shape``."""
    out = ctrl
    for axis, n in enumerate(shape):
        weights = _bspline_matrix(ctrl.shape[axis], int(n))
        out = np.moveaxis(np.tensordot(weights, out, axes=([1], [axis])), 0, axis)
    return out


def _smooth_noise(
    rng: np.random.Generator, shape: Sequence[int], cells: Sequence[int]
) -> np.ndarray:
    """Smooth Gaussian random field of zero mean and unit standard deviation, float32.

    ``cells`` (per axis) is the number of B-spline intervals across the field, so the correlation
    length is about ``shape / cells`` voxels.
    """
    ctrl = rng.standard_normal(tuple(int(c) + 3 for c in cells)).astype(np.float32)
    field = _bspline_upsample(ctrl, shape)
    return ((field - field.mean()) / max(float(field.std()), 1e-6)).astype(np.float32)


def _random_points(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    scale: np.ndarray,
    *,
    velocity_std: float,
    control: int,
    max_rotation: float | Sequence[float],
    max_log_scale: float,
    max_translation: float | Sequence[float],
) -> list[np.ndarray]:
    """Sample a deformation and an affine; return the template coordinates, one array per axis.

    Template coordinates of voxel ``x`` are ``D (A(phi(x)) - c)`` with ``D = diag(scale)``
    (template units per voxel, ``spacing / R``) and ``c`` the grid centre. ``phi = exp(v)``:
    ``v`` has ``(control + 3) ** N`` Gaussian cubic B-spline coefficients of std
    ``velocity_std`` (template units), is evaluated on a grid 4 times coarser than ``shape`` and
    integrated there, then resampled to ``shape``. ``A`` has rotation angles uniform in
    ``[-max_rotation, max_rotation]`` (radians, one value or one per angle), log scales uniform
    in ``[-max_log_scale, max_log_scale]`` and translations uniform in
    ``[-max_translation, max_translation]`` (template units, one value or one per axis).
    """
    ndim = len(shape)
    n_angles = 1 if ndim == 2 else 3
    velocity = rng.standard_normal((*(control + 3,) * ndim, ndim)) * velocity_std
    rotation = rng.uniform(-1, 1, n_angles) * np.broadcast_to(max_rotation, (n_angles,))
    log_scale = rng.uniform(-max_log_scale, max_log_scale, ndim)
    translation = rng.uniform(-1, 1, ndim) * np.broadcast_to(max_translation, (ndim,))

    coarse = tuple(max(8, -(-s // 4)) for s in shape)
    # Template units -> voxels of the coarse grid (one coarse voxel = shape/coarse fine voxels).
    per_coarse = scale * np.asarray(shape) / np.asarray(coarse)
    v = _bspline_upsample(velocity.astype(np.float32), coarse) / per_coarse.astype(np.float32)
    disp = geometry.resize_field(geometry.integrate_svf(v, steps=6), shape)
    matrix = np.asarray(
        geometry.affine_matrix(np.float32(translation), np.float32(rotation), np.float32(log_scale))
    )
    homogeneous = np.ones(1)
    to_voxels = np.diag(np.concatenate([1 / scale, homogeneous]))
    to_template = np.diag(np.concatenate([scale, homogeneous]))
    affine = np.float32(to_voxels @ matrix @ to_template)
    disp = np.asarray(geometry.compose(geometry.affine_disp(affine, shape), disp))
    centre = (np.asarray(shape) - 1) / 2
    points = []
    for i, n in enumerate(shape):
        index = np.arange(n, dtype=np.float32).reshape([n if k == i else 1 for k in range(ndim)])
        points.append((index + disp[..., i] - np.float32(centre[i])) * np.float32(scale[i]))
    return points


# --------------------------------------------------------------------------------------------
# Shapes, evaluated at template points (lists of per-axis arrays); negative inside
# --------------------------------------------------------------------------------------------


def _floats(values) -> list[float]:
    """Python floats, so that arithmetic with float32 arrays stays float32 (NumPy >= 2)."""
    return [float(v) for v in values]


def _ellipsoid(p, centre, radii):
    """Lower bound of the signed distance to an axis-aligned ellipsoid (negative inside)."""
    centre, radii = _floats(centre), _floats(radii)
    q = sum(((x - c) / r) ** 2 for x, c, r in zip(p, centre, radii))
    return (np.sqrt(q) - 1) * min(radii)


def _segment(p, a, b):
    """Distance to the segment ``a``-``b`` and the position ``t`` in [0, 1] along it."""
    a, b = _floats(a), _floats(b)
    ab = [bi - ai for ai, bi in zip(a, b)]
    length2 = max(sum(v * v for v in ab), 1e-12)
    t = np.clip(sum((x - ai) * v for x, ai, v in zip(p, a, ab)) / length2, 0, 1)
    dist = np.sqrt(sum((x - ai - t * v) ** 2 for x, ai, v in zip(p, a, ab)))
    return dist, t


def _tube(p, points, radii):
    """Signed distance-like function of a tube along a polyline with linearly tapered radius."""
    out = None
    radii = _floats(radii)
    for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        dist, t = _segment(p, a, b)
        d = dist - (ra + (rb - ra) * t)
        out = d if out is None else np.minimum(out, d)
    return out


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=3.0) if sigma else image


def _case(name, seed, image, label, spacing, prefix) -> Case:
    return Case(
        id=f"{prefix}_{seed:04d}",
        image=np.asarray(image, np.float32)[..., None],
        label=np.asarray(label, np.int32),
        spacing=spacing,
        source=f"jaxseg.data.synthetic.{name}(seed={seed})",
    )
