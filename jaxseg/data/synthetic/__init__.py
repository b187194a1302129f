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

from collections.abc import Callable

import numpy as np

from jaxseg.data.case import Case
from jaxseg.data.synthetic.abdomen import abdominal_ct_like
from jaxseg.data.synthetic.cardiac import CARDIAC_LABELS, cardiac_like
from jaxseg.data.synthetic.la import la_like
from jaxseg.data.synthetic.letter_b import letter_b
from jaxseg.data.synthetic.shapes import _check_seed

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


def save_sample_figures(*args, **kwargs):
    """:func:`jaxseg.data.synthetic.figures.save_sample_figures` (imported on use: matplotlib)."""
    from jaxseg.data.synthetic.figures import save_sample_figures as save

    return save(*args, **kwargs)
