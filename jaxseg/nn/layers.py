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

XLA's CPU backend runs 3D convolutions through a generic loop that is several times slower than
its 2D convolutions and matrix products. :func:`conv` can therefore compute the same function in
"sliced" forms: a stride-1 3D convolution as the sum over the first kernel axis of 2D
convolutions of shifted slices (3-5x faster forward and backward on CPU), and a convolution whose
kernel is a multiple of its stride (V-Net's down-sampling, the discriminator's 4^3 stride-2
layers) as a stride-1 one on the space-to-depth rearrangement. The choice is the ``impl``
argument of :func:`conv`, one of :data:`CONV_IMPLS`, which every network takes as its
``conv_impl`` field:

* ``"auto"`` (the default): the sliced forms when JAX's default backend is the CPU (decided at
  trace time), ``lax.conv_general_dilated`` otherwise;
* ``"lax"``: always ``lax.conv_general_dilated``;
* ``"sliced"``: always the sliced forms (where they apply), on any backend.

The choice changes neither the parameters nor the function: the results equal the direct
convolutions up to float32 summation order. The transposed convolution with kernel = stride is a
matrix product followed by a depth-to-space reshape with every choice.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

NORMALIZATIONS = ("none", "batchnorm", "groupnorm", "instancenorm")
TORCH_KERNEL_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
Dtype = Any
#: The ways :func:`conv` computes a convolution (see the module docstring).
CONV_IMPLS = ("auto", "lax", "sliced")


def check_conv_impl(impl: str) -> None:
    """Raise ValueError unless ``impl`` is one of :data:`CONV_IMPLS`."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r}")


def _conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
    *,
    impl: str,
):
    """``lax.conv_general_dilated``, or its sliced form for channels-last 3D convolutions when
    ``impl`` is "sliced", or "auto" on the CPU backend."""
    kwargs = {
        "lhs_dilation": lhs_dilation,
        "rhs_dilation": rhs_dilation,
        "dimension_numbers": dimension_numbers,
        "feature_group_count": feature_group_count,
        "batch_group_count": batch_group_count,
        "precision": precision,
        "preferred_element_type": preferred_element_type,
    }
    sliced = impl == "sliced" or (impl == "auto" and jax.default_backend() == "cpu")
    if not (
        sliced
        and lhs.ndim == 5
        and not isinstance(padding, str)
        and all(d in (None, 1) or tuple(d) == (1,) * 3 for d in (lhs_dilation, rhs_dilation))
        and feature_group_count == 1
        and batch_group_count == 1
        and preferred_element_type is None
        and dimension_numbers
        == lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NDHWC", "DHWIO", "NDHWC"))
    ):
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)
    strides, pads, kernel = tuple(window_strides), tuple(map(tuple, padding)), rhs.shape[:3]
    if strides == (1, 1, 1):
        return _conv3d_as_2d(lhs, rhs, pads, precision)
    if len(set(strides)) == 1 and all(k % strides[0] == 0 for k in kernel):
        return _strided_conv3d(lhs, rhs, strides[0], pads, precision)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)


def _conv3d_as_2d(x, w, padding, precision):
    """Stride-1 3D convolution as a sum of 2D convolutions over (Y, Z), X folded into the batch."""
    (before, after), k = padding[0], w.shape[0]
    x = jnp.pad(x, ((0, 0), (before, after), (0, 0), (0, 0), (0, 0)))
    b, n = x.shape[0], x.shape[1] - k + 1
    out = None
    for i in range(k):
        s = x[:, i : i + n].reshape(b * n, *x.shape[2:])
        y = lax.conv_general_dilated(
            s,
            w[i],
            (1, 1),
            padding[1:],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=precision,
        )
        out = y if out is None else out + y
    return out.reshape(b, n, *out.shape[1:])


def _strided_conv3d(x, w, stride, padding, precision):
    """Stride-``s`` convolution with kernel ``k`` (a multiple of ``s``) as a stride-1 one with
    kernel ``k / s`` on the space-to-depth rearrangement of the padded input (``s^3`` times the
    channels); trailing voxels that no window reaches are cropped first."""
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    b, c, s = x.shape[0], x.shape[-1], stride
    n = [size // s for size in x.shape[1:4]]
    x = x[:, : n[0] * s, : n[1] * s, : n[2] * s]
    x = x.reshape(b, n[0], s, n[1], s, n[2], s, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    x = x.reshape(b, *n, s**3 * c)
    k = [size // s for size in w.shape[:3]]
    w = w.reshape(k[0], s, k[1], s, k[2], s, c, w.shape[-1]).transpose(0, 2, 4, 1, 3, 5, 6, 7)
    w = w.reshape(*k, s**3 * c, w.shape[-1])
    return _conv3d_as_2d(x, w, ((0, 0),) * 3, precision)


def conv(
    features: int,
    kernel: int,
    spatial_dims: int,
    *,
    strides: int = 1,
    padding: int | None = None,
    dtype: Dtype = jnp.float32,
    impl: str = "auto",
    name: str | None = None,
) -> nn.Conv:
    """A ``kernel^spatial_dims`` convolution padded by ``padding`` (default ``kernel // 2``),
    computed as ``impl`` (one of :data:`CONV_IMPLS`) says; ``impl`` changes no parameter."""
    check_conv_impl(impl)
    pad = kernel // 2 if padding is None else padding
    return nn.Conv(
        features,
        (kernel,) * spatial_dims,
        strides=(strides,) * spatial_dims,
        padding=[(pad, pad)] * spatial_dims,
        kernel_init=TORCH_KERNEL_INIT,
        dtype=dtype,
        conv_general_dilated=functools.partial(_conv_general_dilated, impl=impl),
        name=name,
    )


class ConvTranspose(nn.Module):
    """Transposed convolution with kernel = stride = ``factor`` and no padding: every input voxel
    becomes a ``factor^d`` block, as PyTorch's ``ConvTranspose(k=factor, stride=factor)``.

    Parameters are those of ``flax.linen.ConvTranspose(..., transpose_kernel=True)``: ``kernel``
    ``(factor,) * d + (features, in_features)`` and ``bias``; the output is computed as one matrix
    product and a depth-to-space reshape, ``y[f * i + o] = sum_c x[i, c] kernel[o, :, c] + bias``.
    """

    features: int
    factor: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d, f = x.ndim - 2, self.factor
        kernel = self.param(
            "kernel", TORCH_KERNEL_INIT, (f,) * d + (self.features, x.shape[-1]), jnp.float32
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        letters = "pqrs"[:d]
        spatial = "xyzw"[:d]
        out = "".join(a + b for a, b in zip(spatial, letters, strict=True))
        y = jnp.einsum(f"n{spatial}c,{letters}oc->n{out}o", x, kernel)
        y = y.reshape(x.shape[0], *(s * f for s in x.shape[1:-1]), self.features)
        return y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


def conv_transpose(
    features: int, factor: int, spatial_dims: int, *, dtype: Dtype = jnp.float32, name=None
) -> ConvTranspose:
    """A :class:`ConvTranspose` (``spatial_dims`` is implied by the input; kept for symmetry
    with :func:`conv`)."""
    del spatial_dims
    return ConvTranspose(features, factor, dtype=dtype, name=name)


def check_normalization(kind: str) -> None:
    if kind not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {kind!r}")


def normalize(
    x: jax.Array,
    kind: str,
    *,
    train: bool,
    dtype: Dtype = jnp.float32,
    name: str | None = None,
    batch_mask: jax.Array | None = None,
) -> jax.Array:
    """Apply normalisation ``kind`` (one of :data:`NORMALIZATIONS`) to channels-last ``x``.

    ``batchnorm`` uses batch statistics when ``train`` and running averages otherwise; with
    ``batch_mask`` (``(B,)`` bool) the batch statistics, and so the running averages, are those
    of the items it selects, and every item is normalised with them. ``groupnorm`` uses 16
    groups; ``instancenorm`` normalises each sample and channel over space and has no parameters
    (PyTorch's ``InstanceNorm3d`` defaults); both ignore ``batch_mask``.
    """
    check_normalization(kind)
    if kind == "batchnorm":
        mask = None if batch_mask is None else batch_mask.reshape((-1,) + (1,) * (x.ndim - 1))
        return nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
        )(x, mask=mask)
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
