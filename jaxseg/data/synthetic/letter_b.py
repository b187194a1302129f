"""The 2D letter-B images of Atlas-ISTN (section 3.1), clean or with clutter."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxseg.data.case import Case
from jaxseg.data.synthetic.shapes import (
    _case,
    _check_geometry,
    _check_seed,
    _random_points,
    _segment,
    _streams,
)


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
