"""STIPPLE (Petit, Thome, Soler, IJCARS 2022): spatial prior, prior-driven prediction,
positioning and pseudo-label selection.

* :func:`build_spatial_prior` (NumPy, data preparation): the ``(Wp, Hp, B)`` prior of an organ
  from labelled volumes (Algorithm 1); :func:`bounding_box`: the box that centres an organ.
* :func:`place_prior`: that prior as a per-voxel ``(X, Y, Z)`` volume around a given centre.
* :func:`locate_prior`: the organ centre in an unlabelled volume (coarse centroid, then a KL
  search over translations).
* :func:`prior_driven_softmax`, :func:`prior_driven_sigmoid`: the fusion of logits and prior
  (eq. 2-3).
* :func:`select_pseudo_labels`: the most confident voxels as ``(label, weight)`` volumes.

Volumes are ``(X, Y, Z)`` with Z axial; see :mod:`jaxseg.priors.spatial` for the window
conventions.
"""

from jaxseg.priors.prediction import (
    prior_driven_sigmoid,
    prior_driven_softmax,
    select_pseudo_labels,
)
from jaxseg.priors.spatial import bounding_box, build_spatial_prior, locate_prior, place_prior

__all__ = [
    "bounding_box",
    "build_spatial_prior",
    "locate_prior",
    "place_prior",
    "prior_driven_sigmoid",
    "prior_driven_softmax",
    "select_pseudo_labels",
]
