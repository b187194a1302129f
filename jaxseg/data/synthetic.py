"""Synthetic phantoms, so that every method runs and is tested with no download.

Four generators, each deterministic in its integer ``seed`` (same seed, same arrays) and each
returning a :class:`jaxseg.data.case.Case`:

- :func:`la_like`: left-atrium MRI-like volume (SASSNet, DTML), label {0, 1}.
- :func:`abdominal_ct_like`: abdominal CT-like volume in HU with a small pancreas-like organ whose
  position varies mostly along axis 2 (STIPPLE), label {0, 1}.
- :func:`cardiac_like`: multi-structure cardiac CT-like phantom, labels 0..5.
- :func:`letter_b`: the 2D letter-B images of Atlas-ISTN (section 3.1), clean or with clutter.

:func:`dataset` generates ``n`` cases of one generator with seeds ``seed, seed + 1, ...``.

How the volumes are built. Each phantom is an anatomy of simple shapes (ellipsoids, tubes along
polylines, rings) written in *template coordinates*: millimetres from the centre of the field of
view divided by ``R``, half the smallest physical extent ``min_i(shape_i * spacing_i) / 2`` (for
the abdomen, over axes 0 and 1 only). A template unit is therefore the same physical length
along every axis, and the anatomy scales with the field of view: the same seed with a smaller
``shape`` gives the same phantom, relative to the image, at a lower resolution, so the statistics
documented below depend on the aspect ratio of the field of view but not on the resolution.
Every voxel ``x`` is mapped to the template by a random smooth deformation followed by a random
affine, ``x -> A(phi(x))``: ``phi = exp(v)`` is the flow of a stationary velocity field given
by Gaussian cubic B-spline coefficients on a coarse grid of control points
(:func:`jaxseg.geometry.integrate_svf`, :func:`jaxseg.geometry.resize_field`), ``A`` comes
from :func:`jaxseg.geometry.affine_matrix` and the two are joined by
:func:`jaxseg.geometry.compose`.
Shapes and labels are then evaluated analytically at the mapped points, so labels have no
interpolation artefacts; intensities get texture, blur, bias and noise in image space.

Randomness is split into independent streams per ingredient (anatomy, deformation, texture,
noise, clutter), so, for example, ``letter_b(s, corrupt=True)`` differs from
``letter_b(s)`` only by the clutter, and its label is identical.

``python -m jaxseg.data.synthetic --figures DIR`` writes sample figures
(:func:`save_sample_figures`); ``--time`` times each generator.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from jaxseg import geometry
from jaxseg.data.case import Case

__all__ = [
    "CARDIAC_LABELS",
    "GENERATORS",
    "abdominal_ct_like",
    "cardiac_like",
    "dataset",
    "la_like",
    "letter_b",
    "save_sample_figures",
]

#: Label values of :func:`cardiac_like`.
CARDIAC_LABELS = {
    "background": 0,
    "lv_blood_pool": 1,
    "lv_myocardium": 2,
    "right_ventricle": 3,
    "left_atrium": 4,
    "right_atrium": 5,
}

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


# --------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------


def la_like(
    seed: int,
    *,
    shape: Sequence[int] = (112, 112, 80),
    spacing: Sequence[float] = (0.625, 0.625, 0.625),
    noise_std: float = 0.16,
    bias_std: float = 0.2,
    deformation: float = 1.0,
    distractors: bool = True,
    normalize: bool = True,
) -> Case:
    """Left-atrium MRI-like volume (gadolinium-enhanced, as in the LA 2018 challenge crops).

    Anatomy (template units, see the module docstring; at the default geometry one unit is
    25 mm): the atrium body is an ellipsoid with semi-axes about (0.82, 0.7, 0.58) (each scaled by
    a log-normal factor of std 0.06) merged with a second lobe 0.5-0.7 times its size, two to four
    pulmonary-vein stubs (tubes of radius 0.09-0.13, flared at the ostium, 0.3-0.5 long, leaving
    backwards, along +axis 1, to the left/right and up/down) and a curved appendage (radius 0.15
    tapering to 0.07, forwards); all of it is the label (1). Around it lies a dark myocardial
    shell 0.08 thick. With ``distractors`` three bright blood-filled structures that are *not*
    labelled sit at least 0.06-0.14 units (1.5-3.5 mm, 2-6 voxels at default) from the atrium:
    a descending aorta (tube along axis 2 behind it), an arch/pulmonary artery (tube along
    axis 0 above it) and a ventricle (large ellipsoid at the front-bottom corner), so that a
    segmenter has to use shape and position, not brightness alone. The rest is tissue with a
    smooth texture (correlation length about 6 voxels) and dark lung-like regions. The whole
    anatomy is moved by a random smooth deformation and a random affine (rotations up to
    0.35 rad about axis 2 and 0.15 rad about axes 0 and 1, scales up to +-8 % per axis,
    translations up to 0.12 units per axis).

    Intensities (before normalisation; blood pool = 1): blood 1 (+-4 % texture), shell 0.35,
    tissue 0.5 +- 0.12 (smooth texture), lung 0.12; a partial-volume blur of 0.6 voxels; a
    multiplicative bias field ``exp(b)``, ``b`` smooth with std ``bias_std``; Rician noise of
    scale ``noise_std``, so the blood/tissue contrast is about 3 noise standard deviations.

    Statistics (measured over seeds 0-49 at the default geometry, see
    experiments/synthetic/README.md): label fraction 0.065-0.135 (mean 0.093); blood/tissue
    contrast 2.2-4.1 noise standard deviations (mean 2.9, seeds 0-9).

    Args:
      seed: non-negative int; the case id is ``la_synth_{seed:04d}``.
      shape: ``(X, Y, Z)`` voxels.
      spacing: mm per voxel; the anatomy scales with the field of view ``shape * spacing``.
      noise_std: Rician noise scale, relative to the blood-pool intensity (1).
      bias_std: standard deviation of the log bias field (natural log; 0 switches it off).
      deformation: multiplier of the random smooth deformation (0 switches it off;
        at 1 the velocity's B-spline coefficients on a 7^3 grid have std 0.09 units).
      distractors: add the unlabelled bright neighbours.
      normalize: z-score the image over the volume (zero mean, unit std), as the UA-MT
        ``mri_norm2.h5`` images; otherwise it stays in the units above.

    Returns:
      Case with image float32 ``(*shape, 1)``, label int32 ``(*shape)`` in {0, 1}.
    """
    name = "la_like"
    seed = _check_seed(seed)
    shape, spacing = _check_geometry(name, shape, spacing, 3)
    rngs = _streams(name, seed)
    scale = _template_scale(shape, spacing, 3)

    p = _random_points(
        rngs["deformation"],
        shape,
        scale,
        velocity_std=0.09 * deformation,
        control=4,
        max_rotation=(0.15, 0.15, 0.35),
        max_log_scale=0.08,
        max_translation=0.12,
    )

    rng = rngs["anatomy"]
    centre = rng.uniform(-0.08, 0.08, 3)
    radii = np.asarray([0.82, 0.7, 0.58]) * np.exp(rng.normal(0, 0.06, 3))
    atrium = _ellipsoid(p, centre, radii)
    # A second, smaller lobe makes the body irregular (smooth shapes, not an ellipsoid).
    lobe = centre + rng.uniform(-0.3, 0.3, 3) * radii
    atrium = np.minimum(atrium, _ellipsoid(p, lobe, radii * rng.uniform(0.5, 0.7, 3)))
    # Pulmonary veins: two to four of the four ostia (left/right x superior/inferior).
    ostia = [(-1, 1), (-1, -1), (1, 1), (1, -1)]
    keep = rng.permutation(4)[: rng.integers(2, 5)]
    for k in sorted(keep):
        side, level = ostia[k]
        direction = _unit(np.asarray([side * 0.9, 1.0, level * 0.5]) + rng.normal(0, 0.15, 3))
        reach = float(np.linalg.norm(direction * radii))
        length = rng.uniform(0.3, 0.5)
        r = rng.uniform(0.09, 0.13)
        start = centre + 0.6 * reach * direction
        ostium = centre + (reach + 0.05) * direction
        end = centre + (reach + length) * direction
        atrium = np.minimum(atrium, _tube(p, [start, ostium, end], [r * 1.5, r * 1.3, r]))
    # Appendage: a curved, tapering tube to the front and side.
    direction = _unit(np.asarray([0.9, -1.0, 0.35]) + rng.normal(0, 0.15, 3))
    bend = _unit(np.cross(direction, [0, 0, 1]) + rng.normal(0, 0.2, 3))
    reach = float(np.linalg.norm(direction * radii))
    a0 = centre + 0.6 * reach * direction
    a1 = centre + (reach + 0.2) * direction
    a2 = a1 + 0.25 * direction + 0.15 * bend
    atrium = np.minimum(atrium, _tube(p, [a0, a1, a2], [0.15, 0.12, 0.07]))
    label = atrium < 0
    blood = label.copy()
    shell = (atrium >= 0) & (atrium < 0.08)

    if distractors:
        gap = rng.uniform(0.06, 0.14, 3)
        top = centre[2] + radii[2]
        back = centre[1] + radii[1]
        r_ao = rng.uniform(0.18, 0.26)
        x_ao = centre[0] + rng.uniform(0.2, 0.5) * rng.choice([-1, 1])
        aorta = _tube(
            p,
            [(x_ao, back + r_ao * 0.6, -2.0), (x_ao, back + r_ao * 0.6, 2.0)],
            [r_ao, r_ao],
        )
        r_pa = rng.uniform(0.15, 0.22)
        arch = _tube(
            p,
            [(-2.0, centre[1] + rng.uniform(-0.3, 0.1), top + r_pa * 0.7), (2.0, -0.1, top + 0.1)],
            [r_pa, r_pa],
        )
        ventricle = _ellipsoid(
            p, centre + np.asarray([rng.uniform(-0.4, 0.4), -1.25, -0.9]), (0.8, 0.6, 0.6)
        )
        for d, g in zip((aorta, arch, ventricle), gap):
            vessel = (d < 0) & (atrium > g)
            blood |= vessel
            shell |= (d >= 0) & (d < 0.06) & (atrium > g)
        shell &= ~blood

    tex = rngs["texture"]
    tissue_tex = _smooth_noise(tex, shape, [max(2, s // 6) for s in shape])
    lung_field = _smooth_noise(tex, shape, (3, 3, 3))
    blood_tex = _smooth_noise(tex, shape, [max(2, s // 10) for s in shape])
    bias = _smooth_noise(tex, shape, (2, 2, 2))
    lung = (lung_field > 0.5) & (atrium > 0.3) & ~blood
    image = 0.5 + 0.12 * tissue_tex
    image = np.where(lung, 0.12 + 0.03 * tissue_tex, image)
    image = np.where(shell, 0.35, image)
    image = np.where(blood, 1.0 + 0.04 * blood_tex, image)
    image = _blur(image.astype(np.float32), 0.6)
    image = image * np.exp(bias_std * bias)
    noise = rngs["noise"].standard_normal((2, *shape), dtype=np.float32) * noise_std
    image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)
    if normalize:
        image = (image - image.mean()) / max(float(image.std()), 1e-6)
    return _case(name, seed, image, label, spacing, "la_synth")


def abdominal_ct_like(
    seed: int,
    *,
    shape: Sequence[int] = (96, 96, 64),
    spacing: Sequence[float] = (1.5, 1.5, 2.5),
    z_range: float = 0.35,
    noise_std: float = 12.0,
    deformation: float = 1.0,
) -> Case:
    """Abdominal CT-like volume in Hounsfield units with a pancreas-like organ (label 1).

    Axes: 0 patient's right (low index) to left, 1 front (low index) to back, 2 feet (low) to
    head. Template units are mm
    divided by half the in-plane field of view (72 mm at the default geometry, so the phantom is
    a scaled-down abdomen filling the slice).

    Anatomy (HU, portal-venous-like): air -1000 outside an elliptic body (semi-axes about
    0.95 x 0.72); subcutaneous fat -100, an abdominal-wall muscle ring 45, visceral fat -90 with
    a soft-tissue texture; the spine (cortical bone 700, cancellous 230, discs 80, canal 15),
    paraspinal and psoas muscles 50, aorta 170 and IVC 130, liver 105 (right, upper), spleen
    115 (left, upper), kidneys 170 with a 120 hilum, a stomach with fluid 15 and gas -900, bowel
    loops (wall 60, content 15 or gas) in the lower abdomen; organ means vary by +-10 HU between
    cases. The pancreas is a tapered tube along a polyline (head by the duodenum on the right,
    neck in front of the vessels, tail rising to the spleen; radius 0.11-0.13 at the head,
    0.07 at the neck, 0.06 at the tail), 110 HU (+-10 between cases), with the splenic vein
    (160 HU, unlabelled) along its back.

    Position: the whole anatomy is shifted along axis 2 by ``z0`` uniform in
    ``[-z_range, z_range]`` template units (the scan's field of view moving along the body) and
    the pancreas moves a further +-0.05 along axis 2 and +-0.03 in the plane; the random affine
    rotates about axis 2 by up to 0.08 rad, scales by up to +-5 % and translates in-plane by up
    to 0.03. So the pancreas centre varies mostly along axis 2 (std about 15 mm at default
    vs about 2 mm in-plane), which is what STIPPLE's z-binned spatial prior models.

    Image formation: partial-volume blur (0.6 voxels), Gaussian noise of std ``noise_std`` HU,
    clipped to [-1024, 3071]. A [-160, 300] HU window shows the organs (STIPPLE's setting).

    Statistics (seeds 0-49, default geometry): pancreas 0.22-0.30 % of the volume (< 2 %);
    mean HU over the label 77-98 (boundary voxels share partial volume with fat), over its
    interior (label eroded by one voxel) 97-118; centre std (1.7, 2.0, 15.3) mm along axes
    (0, 1, 2).

    Args:
      seed: non-negative int; the case id is ``pancreas_synth_{seed:04d}``.
      shape: ``(X, Y, Z)`` voxels.
      spacing: mm per voxel.
      z_range: half-range of the axial shift of the anatomy, template units (0.35 = 25 mm at
        default).
      noise_std: Gaussian noise std in HU.
      deformation: multiplier of the random smooth deformation (0 switches it off;
        at 1 the velocity's B-spline coefficients on a 7^3 grid have std 0.03 units).

    Returns:
      Case with image float32 ``(*shape, 1)`` in HU, label int32 ``(*shape)`` in {0, 1}.
    """
    name = "abdominal_ct_like"
    seed = _check_seed(seed)
    shape, spacing = _check_geometry(name, shape, spacing, 3)
    rngs = _streams(name, seed)
    scale = _template_scale(shape, spacing, 2)  # the axial extent

    p = _random_points(
        rngs["deformation"],
        shape,
        scale,
        velocity_std=0.03 * deformation,
        control=4,
        max_rotation=(0.0, 0.0, 0.08),
        max_log_scale=0.05,
        max_translation=(0.03, 0.03, 0.0),
    )
    rng = rngs["anatomy"]
    z0 = rng.uniform(-z_range, z_range)
    x, y, z = p
    zc = z - z0  # anatomy-relative axial coordinate
    flat = [x, y, np.zeros_like(x)]  # for in-plane shapes (cylinders along axis 2)

    def hu(mean, spread=10.0):
        return mean + rng.uniform(-spread, spread)

    body_axes = np.asarray([0.95, 0.72]) * np.exp(rng.normal(0, 0.03, 2))
    body = _ellipsoid(flat, (0, 0.02, 0), (*body_axes, 1.0))
    wall_in = _ellipsoid(flat, (0, 0.02, 0), (*(body_axes - 0.1), 1.0))
    cavity = _ellipsoid(flat, (0, 0.02, 0), (*(body_axes - 0.14), 1.0))

    tex = rngs["texture"]
    fat_tex = _smooth_noise(tex, shape, [max(2, s // 5) for s in shape])
    organ_tex = _smooth_noise(tex, shape, [max(2, s // 8) for s in shape])
    image = np.full(shape, -1000.0, np.float32)
    image[body < 0] = hu(-100)
    image[wall_in < 0] = hu(45)
    inside = cavity < 0
    image = np.where(inside, -90 + 25 * np.maximum(fat_tex, 0), image)

    def paint(mask, value, texture=3.0):
        nonlocal image
        image = np.where(mask, value + texture * organ_tex, image).astype(np.float32)

    # Bowel loops in the lower abdomen and the stomach (under the organs).
    for _ in range(rng.integers(6, 11)):
        c = np.asarray([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.05), rng.uniform(-0.9, -0.15)])
        e = c + rng.normal(0, 0.2, 3)
        rr = rng.uniform(0.06, 0.1)
        loop = _tube([x, y, zc], [c, e], [rr, rr])
        paint(inside & (loop < 0), 60)
        gas = rng.random() < 0.3
        paint(inside & (loop < -0.025), -900 if gas else hu(15), 0 if gas else 3)
    stomach = _ellipsoid([x, y, zc], (0.35, -0.3, 0.45), (0.25, 0.18, 0.25))
    paint(inside & (stomach < 0), 60)
    paint(inside & (stomach < -0.02), hu(15))
    paint(inside & (stomach < -0.02) & (y < -0.36), -900, 0)

    liver = _ellipsoid([x, y, zc], (-0.42, -0.02, 0.5), (0.45, 0.55, 0.5))
    paint(inside & (liver < 0), hu(105))
    spleen = _ellipsoid([x, y, zc], (0.58, 0.25, 0.45), (0.2, 0.15, 0.3))
    paint(inside & (spleen < 0), hu(115))
    for side in (-1, 1):
        kidney = _ellipsoid([x, y, zc], (side * 0.4, 0.33, 0.05 + 0.08 * side), (0.13, 0.12, 0.3))
        paint(inside & (kidney < 0), hu(170))
        hilum = _ellipsoid([x, y, zc], (side * 0.33, 0.3, 0.05 + 0.08 * side), (0.05, 0.05, 0.12))
        paint(inside & (hilum < 0), 120)
        psoas = _ellipsoid(flat, (side * 0.2, 0.4, 0), (0.08, 0.08, 1.0))
        paint(inside & (psoas < 0), hu(50))
        paraspinal = _ellipsoid(flat, (side * 0.22, 0.64, 0), (0.16, 0.1, 1.0))
        paint((body < 0) & (paraspinal < 0), 50)

    # Spine: vertebral bodies with discs every 32 mm (in template units at default).
    vertebra = _ellipsoid(flat, (0, 0.44, 0), (0.13, 0.11, 1.0))
    disc = np.cos(2 * np.pi * zc / 0.45) > 0.75
    paint(vertebra < 0, 700, 20)
    paint(vertebra < -0.025, np.where(disc, 80.0, hu(230)), 10)
    arch = _ellipsoid(flat, (0, 0.62, 0), (0.1, 0.09, 1.0))
    paint((arch < 0) & ~disc, 500, 20)
    paint(_ellipsoid(flat, (0, 0.62, 0), (0.055, 0.05, 1.0)) < 0, 15)
    aorta = _ellipsoid(flat, (0.08, 0.27, 0), (0.065, 0.065, 1.0))
    paint(aorta < 0, hu(170, 20))
    ivc = _ellipsoid(flat, (-0.13, 0.25, 0), (0.08, 0.06, 1.0))
    paint(ivc < 0, hu(130))

    # Pancreas (label) and the splenic vein behind it.
    shift = np.asarray(
        [rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(-0.05, 0.05)]
    )
    knots = np.asarray(
        [(-0.3, 0.02, -0.1), (-0.18, -0.02, -0.05), (0.0, -0.08, 0.0), (0.22, -0.02, 0.05),
         (0.45, 0.12, 0.14)]
    ) + shift + rng.normal(0, 0.015, (5, 3))  # fmt: skip
    pancreas = _tube([x, y, zc], list(knots), [0.11, 0.13, 0.07, 0.075, 0.06])
    vein = _tube([x, y, zc], list(knots[2:] + np.asarray([0, 0.07, 0])), [0.025, 0.025, 0.02])
    label = (pancreas < 0) & (vein >= 0) & inside
    paint(label, hu(110), 4)
    paint(inside & (vein < 0), 160)

    image = _blur(image, 0.6)
    image = image + rngs["noise"].standard_normal(shape, dtype=np.float32) * noise_std
    image = np.clip(image, -1024, 3071)
    return _case(name, seed, image, label, spacing, "pancreas_synth")


def cardiac_like(
    seed: int,
    *,
    shape: Sequence[int] = (64, 64, 64),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    max_rotation: float = 0.26,
    max_log_scale: float = 0.1,
    max_translation: float = 0.1,
    noise_std: float = 20.0,
    deformation: float = 1.0,
) -> Case:
    """Multi-structure cardiac CT-like phantom (contrast-enhanced, CCTA-like), labels 0..5.

    Labels (:data:`CARDIAC_LABELS`): 1 LV blood pool, 2 LV myocardium, 3 RV, 4 LA, 5 RA.
    In a heart frame (long axis tilted by 0.7 rad from axis 2), the LV cavity is a prolate
    ellipsoid (semi-axes about 0.26, 0.26, 0.46 template units, 8, 8 and 15 mm at default, each
    with a log-normal factor of std 0.08) wrapped by a closed myocardium 0.11-0.13 units
    (3.5-4 mm) thick; the RV is a larger ellipsoid beside it with the LV
    (and its myocardium) cut out, so it wraps the septum as a crescent; the LA and RA are
    ellipsoids above the LV and RV (towards the base). An unlabelled aorta leaves the LV base,
    the heart sits in pericardial fat inside a body with lungs, chest wall and spine.
    Between cases: random shapes as above, a random smooth deformation and a random global affine
    (rotations uniform in ``[-max_rotation, max_rotation]`` rad about each axis, log scales in
    ``[-max_log_scale, max_log_scale]``, translations in ``[-max_translation, max_translation]``
    template units per axis).

    HU: left-heart blood 380, right-heart blood 260, aorta 380 (each +-30 between cases),
    myocardium 110, pericardial fat -90, lung -820, chest wall 40, bone 600; partial-volume blur
    0.6 voxels and Gaussian noise of std ``noise_std`` HU.

    Statistics (seeds 0-49, default geometry): every structure present in every case (smallest
    volume fractions: LV 1.1 %, myocardium 2.0 %, RV 1.0 %, LA 0.38 %, RA 0.45 %); the
    myocardium is closed, so the LV dilated by 2 voxels lies entirely in LV or myocardium.

    Args:
      seed: non-negative int; the case id is ``cardiac_synth_{seed:04d}``.
      shape: ``(X, Y, Z)`` voxels; spacing: mm per voxel (the anatomy fills the field of view:
        one template unit is half its smallest extent, 32 mm at default).
      max_rotation: radians; max_log_scale: natural log; max_translation: template units.
      noise_std: Gaussian noise std in HU.
      deformation: multiplier of the random smooth deformation (0 switches it off;
        at 1 the velocity's B-spline coefficients on a 7^3 grid have std 0.04 units).

    Returns:
      Case with image float32 ``(*shape, 1)`` in HU, label int32 ``(*shape)`` in 0..5.
    """
    name = "cardiac_like"
    seed = _check_seed(seed)
    shape, spacing = _check_geometry(name, shape, spacing, 3)
    rngs = _streams(name, seed)
    scale = _template_scale(shape, spacing, 3)
    p = _random_points(
        rngs["deformation"],
        shape,
        scale,
        velocity_std=0.04 * deformation,
        control=4,
        max_rotation=max_rotation,
        max_log_scale=max_log_scale,
        max_translation=max_translation,
    )
    rng = rngs["anatomy"]
    # Heart frame: the long axis (h axis 2, apex at -2) tilted by ~40 degrees towards -axis 0.
    # The heart spans about 1.2 template units from apex to the atria; h is in heart units.
    tilt, size = 0.7, 1.2
    cos, sin = math.cos(tilt), math.sin(tilt)
    h = [(cos * p[0] + sin * p[2]) / size, p[1] / size, (cos * p[2] - sin * p[0]) / size]

    def jitter(v, std=0.08):
        return np.asarray(v) * np.exp(rng.normal(0, std, 3))

    lv_r = jitter([0.22, 0.22, 0.38])
    lv_c = np.asarray([0.12, 0.02, -0.15])
    lv = _ellipsoid(h, lv_c, lv_r)
    myo_t = rng.uniform(0.09, 0.11)
    lv_outer = _ellipsoid(h, lv_c, lv_r + myo_t)
    rv = _ellipsoid(h, (lv_c[0] - 0.25, lv_c[1] - 0.06, lv_c[2] + 0.05), jitter([0.3, 0.3, 0.4]))
    la_c = np.asarray([lv_c[0] + 0.03, 0.12, lv_c[2] + lv_r[2] + myo_t + 0.2])
    la = _ellipsoid(h, la_c, jitter([0.2, 0.18, 0.16]))
    ra_c = np.asarray([lv_c[0] - 0.35, 0.1, lv_c[2] + lv_r[2] + 0.16])
    ra = _ellipsoid(h, ra_c, jitter([0.2, 0.2, 0.2]))
    aorta_path = lv_c + np.asarray([[0.0, -0.1, 0.2], [0.1, -0.2, 1.6]])
    aorta = _tube(h, list(aorta_path), [0.1, 0.11])
    pericardium = _ellipsoid(h, (lv_c[0] - 0.1, 0.03, 0.1), (0.58, 0.48, 0.8))

    label = np.zeros(shape, np.int32)
    label[ra < 0] = 5
    label[rv < 0] = 3
    label[la < 0] = 4
    label[lv_outer < 0] = 2
    label[lv < 0] = 1
    # The RV free wall and the atrial walls (unlabelled myocardium-like tissue).
    walls = (np.minimum(np.minimum(rv, ra), la) < 0.035) & (label == 0)

    tex = _smooth_noise(rngs["texture"], shape, [max(2, s // 8) for s in shape])
    x, y, _ = p
    flat = [x, y, np.zeros_like(x)]
    image = np.full(shape, -1000.0, np.float32)
    body = _ellipsoid(flat, (0, 0.05, 0), (1.3, 0.95, 1.0))
    image[body < 0] = 40
    for side in (-1, 1):
        lung = _ellipsoid(p, (side * 0.62, 0.15, 0.0), (0.5, 0.65, 1.2))
        image[(lung < 0) & (body < -0.08)] = -820
    spine = _ellipsoid(flat, (0, 0.78, 0), (0.14, 0.12, 1.0))
    image[spine < 0] = 600
    image[pericardium < 0] = -90
    image = image + 8 * tex
    left, right, myo = 380 + rng.uniform(-30, 30), 260 + rng.uniform(-30, 30), 110.0
    image = np.where(walls, myo, image)
    image = np.where(aorta < 0, 380 + rng.uniform(-30, 30), image)
    values = np.asarray([0, left, myo, right, left, right], np.float32)
    image = np.where(label > 0, values[label] + 6 * tex, image)
    image = _blur(image, 0.6)
    image = image + rngs["noise"].standard_normal(shape, dtype=np.float32) * noise_std
    image = np.clip(image, -1024, 3071)
    return _case(name, seed, image, label, spacing, "cardiac_synth")


def _glyph_b(p, rng):
    """Signed distance to a letter B (axis 0 downwards, axis 1 rightwards), template units."""
    half = rng.uniform(0.06, 0.075)  # half stroke width
    top, mid, bottom, left = -0.55, rng.uniform(-0.04, 0.04), 0.55, -0.32
    dist = _segment(p, (top, left), (bottom, left))[0]
    for y0, y1, cx in ((top, mid, rng.uniform(-0.06, 0.0)), (mid, bottom, rng.uniform(0.0, 0.06))):
        r = (y1 - y0) / 2
        for yy in (y0, y1):
            dist = np.minimum(dist, _segment(p, (yy, left), (yy, cx))[0])
        ring = np.abs(np.hypot(p[0] - (y0 + r), p[1] - cx) - r)
        dist = np.minimum(dist, np.where(p[1] >= cx, ring, np.inf))
    return dist - half


def letter_b(
    seed: int,
    *,
    shape: Sequence[int] = (128, 128),
    corrupt: bool = False,
    noise_std: float = 0.1,
    background: float = 0.4,
    foreground: float = 0.6,
    max_rotation: float = 0.26,
    max_log_scale: float = 0.12,
    max_translation: float = 0.1,
    deformation: float = 1.0,
) -> Case:
    """2D letter-B image and label as in Atlas-ISTN (Sinclair et al. 2022, section 3.1).

    The glyph is drawn from simple geometry (no font): a vertical bar and two bowls, each bowl two
    horizontal strokes joined by a half ring; stroke width 0.12-0.15 template units (8-10 pixels
    at 128 x 128; one unit is half the image side), the bowl widths and the waist height vary a
    little between cases. The B is upright when the array is shown with axis 0 downwards (as
    ``imshow`` and PNG files do). It is mapped by a random affine (rotation uniform in
    ``[-max_rotation, max_rotation]``, log scale per axis in ``[-max_log_scale, max_log_scale]``,
    translation per axis in ``[-max_translation, max_translation]``) composed with a
    random B-spline deformation (velocity on a 7 x 7 grid of cubic B-spline control points, std
    0.05 units, integrated to a diffeomorphism). Image: ``background`` plus
    ``foreground - background`` on the letter plus Gaussian noise of std ``noise_std``, clipped
    to [0, 1] (the released set has about 0.39 / 0.59 / 0.1 on the same scale).

    ``corrupt=True`` adds clutter that is not labelled, as in the released corrupted set: 3-7
    discs (radius 0.05-0.11 units) and 1-3 strokes (length 0.2-0.5, half width 0.02-0.04) of the
    letter's intensity (+-0.05), anywhere in the image. Everything else (letter, deformation,
    noise) is the same as for ``corrupt=False`` with the same seed, and the label is identical.

    Statistics (seeds 0-199): letter fraction 0.085-0.161 (mean 0.123) of the image (released
    set: 0.10-0.15); the clutter makes 0.8-4 % of the background brighter than 0.5 (seeds 0-49).

    Args:
      seed: non-negative int; the id is ``letter_b_{seed:04d}`` (``letter_b_corrupt_...``).
      shape: ``(H, W)`` pixels (spacing 1 mm per pixel).
      corrupt: add the clutter.
      noise_std: Gaussian noise std (intensity units).
      background, foreground: noise-free intensities of background and letter.
      max_rotation: radians (0.26 = 15 degrees).
      max_log_scale: natural log of the scale factor (0.12 = +-13 %).
      max_translation: template units (0.1 = 6.4 pixels at 128 x 128).
      deformation: multiplier of the random B-spline deformation (0 switches it off).

    Returns:
      Case with image float32 ``(*shape, 1)`` in [0, 1], label int32 ``(*shape)`` in {0, 1}.
    """
    name = "letter_b"
    seed = _check_seed(seed)
    shape, spacing = _check_geometry(name, shape, (1.0, 1.0), 2)
    rngs = _streams(name, seed)
    scale = np.asarray(spacing) / (min(shape) / 2)
    p = _random_points(
        rngs["deformation"],
        shape,
        scale,
        velocity_std=0.05 * deformation,
        control=4,
        max_rotation=max_rotation,
        max_log_scale=max_log_scale,
        max_translation=max_translation,
    )
    label = _glyph_b(p, rngs["anatomy"]) < 0
    image = np.where(label, foreground, background).astype(np.float32)
    if corrupt:
        rng = rngs["clutter"]
        # Clutter lives in image space (not deformed); template units of the image grid.
        centre = (np.asarray(shape) - 1) / 2
        q = [(g - c) * s for g, c, s in zip(np.indices(shape), centre, scale)]
        limit = [(n - 1) / 2 * s for n, s in zip(shape, scale)]
        clutter = np.zeros(shape, bool)
        values = np.zeros(shape, np.float32)
        for _ in range(rng.integers(3, 8)):
            c = [rng.uniform(-lim, lim) * 0.92 for lim in limit]
            mask = np.hypot(q[0] - c[0], q[1] - c[1]) < rng.uniform(0.05, 0.11)
            values[mask & ~clutter] = foreground + rng.uniform(-0.05, 0.05)
            clutter |= mask
        for _ in range(rng.integers(1, 4)):
            a = np.asarray([rng.uniform(-lim, lim) * 0.92 for lim in limit])
            angle = rng.uniform(0, np.pi)
            b = a + rng.uniform(0.2, 0.5) * np.asarray([np.cos(angle), np.sin(angle)])
            mask = _segment(q, a, b)[0] < rng.uniform(0.02, 0.04)
            values[mask & ~clutter] = foreground + rng.uniform(-0.05, 0.05)
            clutter |= mask
        image = np.where(clutter & ~label, values, image)
    image = image + rngs["noise"].standard_normal(shape, dtype=np.float32) * noise_std
    image = np.clip(image, 0.0, 1.0)
    case = _case(name, seed, image, label, spacing, "letter_b_corrupt" if corrupt else "letter_b")
    return case


GENERATORS: dict[str, Callable[..., Case]] = {
    "la_like": la_like,
    "abdominal_ct_like": abdominal_ct_like,
    "cardiac_like": cardiac_like,
    "letter_b": letter_b,
}


def dataset(name: str, n: int, *, seed: int = 0, **kwargs) -> list[Case]:
    """``n`` cases of the generator ``name``, case ``i`` with seed ``seed + i``.

    So ``dataset("la_like", 80)`` holds ``la_synth_0000`` .. ``la_synth_0079`` and equals
    ``[la_like(i) for i in range(80)]``; use disjoint seed ranges for training and test sets
    (e.g. ``seed=0`` and ``seed=10_000``).

    Args:
      name: one of ``GENERATORS``: "la_like", "abdominal_ct_like", "cardiac_like", "letter_b".
      n: number of cases (>= 0).
      seed: seed of the first case (non-negative int).
      **kwargs: keyword arguments of the generator (shape, spacing, corrupt, ...).

    Returns:
      list of ``n`` :class:`Case`.
    """
    if name not in GENERATORS:
        raise ValueError(
            f"unknown synthetic generator {name!r}; expected one of {list(GENERATORS)}"
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    seed = _check_seed(seed)
    return [GENERATORS[name](seed + i, **kwargs) for i in range(int(n))]


# --------------------------------------------------------------------------------------------
# Figures and timing
# --------------------------------------------------------------------------------------------


def _centre_slice(label: np.ndarray, axis: int) -> int:
    where = np.nonzero(label)
    if not where[0].size:
        return label.shape[axis] // 2
    return int(np.round(where[axis].mean()))


def save_sample_figures(
    directory: str | Path,
    *,
    n: int = 4,
    seed: int = 0,
    options: dict[str, dict] | None = None,
) -> list[Path]:
    """Write one PNG per generator with ``n`` samples (seeds ``seed .. seed + n - 1``).

    3D cases show an axial slice (axis 2) and a coronal slice (axis 1) through the label's
    centre with the label contours; CT-like images use the [-160, 300] HU window (cardiac:
    [-200, 500]); the letter-B figure shows clean and corrupted versions of the same seeds.
    ``options`` maps a generator name to keyword arguments for it (e.g. a smaller ``shape``).

    Returns:
      the paths written: ``la_like.png``, ``abdominal_ct_like.png``, ``cardiac_like.png``,
      ``letter_b.png`` under ``directory``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    options = options or {}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    colors = ["#e41a1c", "#ffd92f", "#4daf4a", "#377eb8", "#f781bf"]
    windows = {"la_like": None, "abdominal_ct_like": (-160, 300), "cardiac_like": (-200, 500)}
    written = []
    for name, window in windows.items():
        cases = dataset(name, n, seed=seed, **options.get(name, {}))
        fig, axes = plt.subplots(2, n, figsize=(3 * n, 6.2), squeeze=False)
        for j, case in enumerate(cases):
            image, label = case.image[..., 0], case.label
            for row, axis in enumerate((2, 1)):
                k = _centre_slice(label, axis)
                img = np.take(image, k, axis=axis).T
                lab = np.take(label, k, axis=axis).T
                sp = [s for i, s in enumerate(case.spacing) if i != axis]
                vmin, vmax = window or np.percentile(image, [1, 99])
                ax = axes[row, j]
                ax.imshow(
                    img,
                    cmap="gray",
                    vmin=vmin,
                    vmax=vmax,
                    origin="lower" if row else "upper",
                    aspect=sp[1] / sp[0],
                    interpolation="nearest",
                )
                for v in range(1, int(label.max()) + 1):
                    if (lab == v).any():
                        ax.contour(lab == v, levels=[0.5], colors=colors[v - 1], linewidths=0.8)
                ax.set_title(f"{case.id} {'axial' if axis == 2 else 'coronal'} {k}", fontsize=8)
                ax.set_axis_off()
        fig.suptitle(f"{name}: image with label contours", fontsize=10)
        fig.tight_layout()
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    fig, axes = plt.subplots(3, n, figsize=(2.6 * n, 8), squeeze=False)
    for j in range(n):
        kwargs = options.get("letter_b", {})
        clean = letter_b(seed + j, **kwargs)
        dirty = letter_b(seed + j, **{**kwargs, "corrupt": True})
        for row, (img, title) in enumerate(
            ((clean.image, clean.id), (dirty.image, dirty.id), (clean.label, "label"))
        ):
            axes[row, j].imshow(np.squeeze(img), cmap="gray", vmin=0, vmax=1)
            axes[row, j].set_title(title, fontsize=8)
            axes[row, j].set_axis_off()
    fig.suptitle("letter_b: clean, corrupted (same seed), label", fontsize=10)
    fig.tight_layout()
    path = directory / "letter_b.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written


def _time_generators(repeats: int) -> None:
    for name, fn in GENERATORS.items():
        start = time.perf_counter()
        fn(0)
        first = time.perf_counter() - start
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            fn(i + 1)
            times.append(time.perf_counter() - start)
        print(
            f"{name}: first call (with compilation) {first:.2f} s, "
            f"median of {repeats} {np.median(times):.3f} s"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m jaxseg.data.synthetic", description="Synthetic phantoms: figures, timing."
    )
    parser.add_argument("--figures", metavar="DIR", help="write sample figures into DIR")
    parser.add_argument("--n", type=int, default=4, help="samples per figure")
    parser.add_argument("--time", action="store_true", help="time each generator (defaults)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per generator")
    args = parser.parse_args(argv)
    if not args.figures and not args.time:
        parser.error("nothing to do: pass --figures DIR and/or --time")
    if args.figures:
        for path in save_sample_figures(args.figures, n=args.n):
            print(path)
    if args.time:
        _time_generators(args.repeats)


if __name__ == "__main__":
    main()
