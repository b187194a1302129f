"""A dimension-generic U-Net covering Atlas-ISTN's ITN and STIPPLE's U-Net."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.nn import layers


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) in 2D or 3D, channels last.

    Level ``0`` applies ``encoder_convs[0]`` conv-norm-ReLU stages with ``features[0]``
    outputs. Each deeper level ``i`` first halves the resolution, either with a stride-2 3^d
    convolution to ``features[i]`` without activation (``downsample="conv"``, Atlas-ISTN) or
    with 2^d max pooling (``downsample="maxpool"``), then applies ``encoder_convs[i]`` stages
    with ``features[i]`` outputs. The decoder goes back up level by level: linear upsampling
    (``upsample="linear"``, aligned voxel centres) or a 2^d transposed convolution to
    ``features[i-1]`` (``upsample="transpose"``), concatenation ``[upsampled, skip]`` along the
    channels and ``decoder_convs`` stages with ``features[i-1]`` outputs. A 1^d convolution gives
    the logits. Presets: :meth:`itn` and :meth:`stipple`.

    ``__call__(x, *, train, batch_mask=None)`` takes ``(B, *S, C_in)`` with ``S`` divisible by
    ``2 ** (len(features) - 1)`` and returns ``{"logits": (B, *S, num_classes)}``;
    ``batch_mask`` (``(B,)`` bool) restricts the batch-norm statistics of training to the items
    it selects (:func:`jaxseg.nn.layers.normalize`).
    ``conv_impl``: see :data:`jaxseg.nn.layers.CONV_IMPLS`.
    """

    spatial_dims: int = 3
    num_classes: int = 2
    features: Sequence[int] = (8, 16, 32, 64)
    encoder_convs: Sequence[int] = (2, 1, 1, 1)
    decoder_convs: int = 1
    downsample: str = "conv"
    upsample: str = "linear"
    normalization: str = "none"
    dtype: layers.Dtype = jnp.float32
    conv_impl: str = "auto"

    @classmethod
    def itn(cls, spatial_dims: int, num_classes: int, **kwargs) -> UNet:
        """Atlas-ISTN's image transformer network (109,826 parameters in 2D with 2 classes,
        328,886 in 3D with 6 classes, for one input channel)."""
        return cls(spatial_dims=spatial_dims, num_classes=num_classes, **kwargs)

    @classmethod
    def stipple(cls, spatial_dims: int, num_classes: int, **kwargs) -> UNet:
        """The U-Net of STIPPLE's Table 5: 64-1024 features, two conv-BN-ReLU stages per level,
        max pooling and transposed-convolution upsampling without activation. 31,042,434
        parameters in 2D for one input channel and 2 classes (the paper reports about 32 M)."""
        features = tuple(kwargs.pop("features", (64, 128, 256, 512, 1024)))
        defaults = {
            "features": features,
            "encoder_convs": (2,) * len(features),
            "decoder_convs": 2,
            "downsample": "maxpool",
            "upsample": "transpose",
            "normalization": "batchnorm",
        }
        return cls(spatial_dims=spatial_dims, num_classes=num_classes, **(defaults | kwargs))

    def _stages(self, x, count: int, features: int, name: str, train: bool, batch_mask):
        for i in range(count):
            x = layers.conv(
                features,
                3,
                self.spatial_dims,
                dtype=self.dtype,
                impl=self.conv_impl,
                name=f"{name}_conv{i}",
            )(x)
            x = layers.normalize(
                x,
                self.normalization,
                train=train,
                dtype=self.dtype,
                name=f"{name}_norm{i}",
                batch_mask=batch_mask,
            )
            x = nn.relu(x)
        return x

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool, batch_mask: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        d, depth = self.spatial_dims, len(self.features)
        layers.check_normalization(self.normalization)
        if len(self.encoder_convs) != depth:
            raise ValueError(
                f"encoder_convs needs one entry per level ({depth}), got {self.encoder_convs}"
            )
        if self.downsample not in ("conv", "maxpool") or self.upsample not in (
            "linear",
            "transpose",
        ):
            raise ValueError(
                f"downsample must be 'conv' or 'maxpool' and upsample 'linear' or 'transpose', "
                f"got {self.downsample!r} and {self.upsample!r}"
            )
        layers.check_input(x, d, 2 ** (depth - 1), "UNet")
        skips = []
        for level, features in enumerate(self.features):
            if level:
                skips.append(x)
                if self.downsample == "conv":
                    x = layers.conv(
                        features,
                        3,
                        d,
                        strides=2,
                        dtype=self.dtype,
                        impl=self.conv_impl,
                        name=f"down{level}",
                    )(x)
                else:
                    x = nn.max_pool(x, (2,) * d, strides=(2,) * d)
            x = self._stages(
                x, self.encoder_convs[level], features, f"encoder{level}", train, batch_mask
            )
        for level in reversed(range(depth - 1)):
            features = self.features[level]
            if self.upsample == "linear":
                x = layers.upsample_linear(x)
            else:
                x = layers.conv_transpose(features, 2, d, dtype=self.dtype, name=f"up{level}")(x)
            x = jnp.concatenate([x, skips[level]], axis=-1)
            x = self._stages(x, self.decoder_convs, features, f"decoder{level}", train, batch_mask)
        logits = layers.conv(
            self.num_classes, 1, d, dtype=self.dtype, impl=self.conv_impl, name="head"
        )(x)
        return {"logits": logits}
