"""Pure functions on coordinates and fields, 2D and 3D, jit/vmap/grad safe.

Fields are ``(*S, N)`` in voxel units, component ``i`` along spatial axis ``i``;
``warp(image, disp)(x) = image(x + disp(x))``. Unbatched: batch with ``jax.vmap``.
"""

from jaxseg.geometry.affine import affine_disp, affine_matrix
from jaxseg.geometry.grid import identity_grid
from jaxseg.geometry.jacobian import folding_fraction, jacobian_determinant
from jaxseg.geometry.sampling import compose, resize_field, warp
from jaxseg.geometry.svf import integrate_svf

__all__ = [
    "affine_disp",
    "affine_matrix",
    "compose",
    "folding_fraction",
    "identity_grid",
    "integrate_svf",
    "jacobian_determinant",
    "resize_field",
    "warp",
]
