"""The left-atrium MRI-like phantom (SASSNet, DTML)."""

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
    _unit,
)


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
