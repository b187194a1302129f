"""Shape representations of segmentation masks: signed distance maps (SASSNet, DTC, DTML)."""

from jaxseg.shape.sdm import sdm_to_mask, signed_distance_map

__all__ = ["sdm_to_mask", "signed_distance_map"]
