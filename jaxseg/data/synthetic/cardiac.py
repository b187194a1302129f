"""The multi-structure cardiac CT-like phantom (Atlas-ISTN in 3D)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from jaxseg.data.case import Case
from jaxseg.data.synthetic.shapes import (
    _blur,
    _case,
    _check_geometry,
    _check_seed,
    _ellipsoid,
    _random_points,
    _smooth_noise,
    _streams,
    _template_scale,
    _tube,
)

#: Label values of :func:`cardiac_like`.
CARDIAC_LABELS = {
    "background": 0,
    "lv_blood_pool": 1,
    "lv_myocardium": 2,
    "right_ventricle": 3,
    "left_atrium": 4,
    "right_atrium": 5,
}


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
