"""jaxseg: semi-supervised and shape-aware 3D medical image segmentation in JAX."""

__version__ = "0.1.0"
