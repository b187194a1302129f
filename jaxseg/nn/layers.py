"""Building blocks shared by jaxseg's networks, dimension-generic (2D and 3D, channels last).

Conventions chosen so that a network configured like a reference PyTorch model computes the same
function (see :mod:`jaxseg.interop.torch`):

* convolutions pad explicitly by ``k // 2`` on both sides, as PyTorch's ``padding=k // 2``
  (``"SAME"`` would pad stride-2 convolutions asymmetrically);
* kernels are initialised as PyTorch's default (uniform in ``±1/sqrt(fan_in)``), biases at 0;
* normalisation layers use PyTorch's epsilon (1e-5) and momentum (0.1, i.e. Flax 0.9). Flax
  updates the running variance with the biased batch variance where PyTorch uses the unbiased
  one, a relative difference of ``1/n`` for ``n`` voxels per channel in the batch;
* linear upsampling aligns voxel centres (``align_corners=False``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMALIZATIONS = ("none", "batchnorm", "groupnorm", "instancenorm")
TORCH_KERNEL_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
Dtype = Any


def conv(
    features: int,
    kernel: int,
    spatial_dims: int,
    *,
    strides: int = 1,
    padding: int | None = None,
    dtype: Dtype = jnp.float32,
    name: str | None = None,
) -> nn.Conv:
    """A ``kernel^spatial_dims`` convolution padded by ``padding`` (default ``kernel // 2``)."""
    pad = kernel // 2 if padding is None else padding
    return nn.Conv(
        features,
        (kernel,) * spatial_dims,
        strides=(strides,) * spatial_dims,
        padding=[(pad, pad)] * spatial_dims,
        kernel_init=TORCH_KERNEL_INIT,
        dtype=dtype,
        name=name,
    )


def conv_transpose(
    features: int, factor: int, spatial_dims: int, *, dtype: Dtype = jnp.float32, name=None
) -> nn.ConvTranspose:
    """Transposed convolution with kernel = stride = ``factor``: each input voxel becomes a
    ``factor^spatial_dims`` block, as PyTorch's ``ConvTranspose(k=factor, stride=factor)``."""
    return nn.ConvTranspose(
        features,
        (factor,) * spatial_dims,
        strides=(factor,) * spatial_dims,
        padding="VALID",
        transpose_kernel=True,
        kernel_init=TORCH_KERNEL_INIT,
        dtype=dtype,
        name=name,
    )


def check_normalization(kind: str) -> None:
    if kind not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {kind!r}")


def normalize(
    x: jax.Array, kind: str, *, train: bool, dtype: Dtype = jnp.float32, name: str | None = None
) -> jax.Array:
    """Apply normalisation ``kind`` (one of :data:`NORMALIZATIONS`) to channels-last ``x``.

    ``batchnorm`` uses batch statistics when ``train`` and running averages otherwise;
    ``groupnorm`` uses 16 groups; ``instancenorm`` normalises each sample and channel over space
    and has no parameters (PyTorch's ``InstanceNorm3d`` defaults).
    """
    check_normalization(kind)
    if kind == "batchnorm":
        return nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
        )(x)
    if kind == "groupnorm":
        return nn.GroupNorm(num_groups=16, epsilon=1e-5, dtype=dtype, name=name)(x)
    if kind == "instancenorm":
        return nn.GroupNorm(
            num_groups=None,
            group_size=1,
            epsilon=1e-5,
            use_scale=False,
            use_bias=False,
            dtype=dtype,
            name=name,
        )(x)
    return x


def channel_dropout(x: jax.Array, rate: float, *, train: bool, name: str | None = None):
    """Drop whole feature maps (PyTorch ``Dropout2d``/``Dropout3d``); needs a ``dropout`` rng."""
    spatial = tuple(range(1, x.ndim - 1))
    return nn.Dropout(rate, broadcast_dims=spatial, deterministic=not train, name=name)(x)


def upsample_linear(x: jax.Array, factor: int = 2) -> jax.Array:
    """(Bi/tri)linear upsampling of ``(B, *S, C)`` by ``factor`` with aligned voxel centres
    (PyTorch ``Upsample(mode="(bi|tri)linear", align_corners=False)``)."""
    shape = (x.shape[0], *(s * factor for s in x.shape[1:-1]), x.shape[-1])
    return jax.image.resize(x, shape, method="linear")


def check_input(x: jax.Array, spatial_dims: int, multiple: int, name: str) -> None:
    """Raise ValueError unless ``x`` is ``(B, *S, C)``, every ``S`` divisible by ``multiple``."""
    if x.ndim != spatial_dims + 2 or any(s % multiple for s in x.shape[1:-1]):
        raise ValueError(
            f"{name} expects input of shape (B, {', '.join(['S'] * spatial_dims)}, C) with "
            f"spatial sizes divisible by {multiple}, got {x.shape}"
        )
