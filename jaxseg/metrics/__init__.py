"""Segmentation and registration metrics on host arrays, compatible with ``medpy.metric.binary``.

Every metric takes numpy or JAX arrays and returns Python floats. See
:mod:`jaxseg.metrics.overlap` for the input conventions and the ``empty=`` policy, and
:mod:`jaxseg.metrics.surface` for the surface-distance definitions.
"""

from jaxseg.metrics.components import largest_component
from jaxseg.metrics.evaluate import METRICS, evaluate_case, inverse_consistency
from jaxseg.metrics.overlap import dice, jaccard
from jaxseg.metrics.surface import asd, assd, hausdorff, hd95

__all__ = [
    "METRICS",
    "asd",
    "assd",
    "dice",
    "evaluate_case",
    "hausdorff",
    "hd95",
    "inverse_consistency",
    "jaccard",
    "largest_component",
]
