"""The abdominal CT-like phantom with a pancreas-like organ (STIPPLE)."""

from __future__ import annotations

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
