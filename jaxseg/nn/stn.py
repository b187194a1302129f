"""Atlas-ISTN's spatial transformer network: a half-resolution velocity field and an affine."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.nn import layers


class AtlasSTN(nn.Module):
    """Spatial transformer network of Atlas-ISTN (Sinclair et al. 2022), 2D or 3D.

    A stride-2 3^d convolution (keeping the input's channels) brings the input to half
    resolution; an encoder-decoder with skip connections (``features`` = 16, 16, 32 at 1/2,
    1/4, 1/8 resolution, linear upsampling) predicts a stationary velocity field at half
    resolution. From the deepest features, 2^d average pooling, a linear layer with
    ``fc_features`` outputs and ReLU feed three zero-initialised linear heads, so that the
    transform starts at the identity:

    * ``translation = tanh(.)`` ``(B, N)``, in the reference's normalised units (1 = half the
      image extent along that axis);
    * ``rotation = tanh(.) * pi / 4`` ``(B, 1)`` in 2D or ``(B, 3)`` Euler angles in 3D;
    * ``log_scale = tanh(.)`` ``(B, N)`` (scale factors ``exp(log_scale)``).

    The velocity is the raw output of the last convolution; turning it and the affine
    parameters into forward and inverse transforms is done by pure functions on
    :mod:`jaxseg.geometry`, so the units are fixed there, not here. Parameter counts: 50,629
    in 2D (2 input channels, 64x64) and 173,938 in 3D (10 input channels, 64^3); the linear
    layer's size depends on the input size.

    ``__call__(x, *, train)`` takes ``(B, *S, C)`` with ``S`` divisible by 16 and returns
    ``{"velocity": (B, *S/2, N), "translation", "rotation", "log_scale"}``. ``train`` is
    accepted for a uniform interface; the network has no train-time behaviour. ``conv_impl``:
    see :data:`jaxseg.nn.layers.CONV_IMPLS`.
    """

    spatial_dims: int = 3
    features: tuple[int, int, int] = (16, 16, 32)
    fc_features: int = 32
    dtype: layers.Dtype = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        d = self.spatial_dims
        layers.check_input(x, d, 16, "AtlasSTN")
        f1, f2, f3 = self.features

        def conv(features, name, strides=1):
            return layers.conv(
                features, 3, d, strides=strides, dtype=self.dtype, impl=self.conv_impl, name=name
            )

        x1 = conv(x.shape[-1], "down1", strides=2)(x)
        x1 = nn.relu(conv(f1, "conv21")(x1))
        x1 = nn.relu(conv(f1, "conv22")(x1))
        x2 = nn.relu(conv(f2, "conv31")(conv(f2, "down2", strides=2)(x1)))
        x3 = nn.relu(conv(f3, "conv41")(conv(f3, "down3", strides=2)(x2)))
        y = jnp.concatenate([layers.upsample_linear(x3), x2], axis=-1)
        y = nn.relu(conv(f2, "conv32")(y))
        y = jnp.concatenate([layers.upsample_linear(y), x1], axis=-1)
        y = nn.relu(conv(f1, "conv23")(y))
        y = nn.relu(conv(f1 // 2, "conv24")(y))
        velocity = conv(d, "conv25")(y)

        pooled = nn.avg_pool(x3, (2,) * d, strides=(2,) * d)
        h = pooled.reshape(pooled.shape[0], -1)
        h = nn.relu(
            nn.Dense(
                self.fc_features, kernel_init=layers.TORCH_KERNEL_INIT, dtype=self.dtype, name="fc"
            )(h)
        )

        def head(features, name):
            return nn.Dense(
                features, kernel_init=nn.initializers.zeros, dtype=self.dtype, name=name
            )(h)

        return {
            "velocity": velocity,
            "translation": jnp.tanh(head(d, "translation")),
            "rotation": jnp.tanh(head(1 if d == 2 else 3, "rotation")) * (math.pi / 4),
            "log_scale": jnp.tanh(head(d, "scaling")),
        }
