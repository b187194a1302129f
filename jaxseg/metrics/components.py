"""Connected-component post-processing of binary segmentations."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask) -> np.ndarray:
    """Keep only the largest connected component of a binary mask.

    This is the post-processing the SASSNet paper calls "NMS" (and the UA-MT/SASSNet code's
    ``getLargestCC``): components are labelled with full connectivity, i.e. voxels are
    neighbours when they share a face, an edge or a corner (8-connectivity in 2D,
    26-connectivity in 3D), which is ``skimage.measure.label``'s default. Components are numbered
    in C (raster) order of their first voxel, and a tie in size keeps the lowest-numbered one,
    as ``argmax`` over the component sizes does in that code.

    Args:
      mask: array of shape ``S`` (any ndim); non-zero is foreground.

    Returns:
      Boolean array of shape ``S``: the largest component of ``mask``; all False when ``mask``
      has no foreground.
    """
    mask = np.asarray(mask)
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    labels, count = ndimage.label(mask != 0, structure=structure)
    if count == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    return labels == 1 + int(np.argmax(sizes[1:]))
