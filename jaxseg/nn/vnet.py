"""The V-Net of the left-atrium papers (UA-MT, SASSNet, DTML) with segmentation and SDM heads."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.nn import layers


class ConvBlock(nn.Module):
    """``stages`` x [3^d convolution -> normalisation -> ReLU], all with ``features`` outputs."""

    features: int
    stages: int
    normalization: str = "batchnorm"
    dtype: layers.Dtype = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        d = x.ndim - 2
        for i in range(self.stages):
            x = layers.conv(
                self.features, 3, d, dtype=self.dtype, impl=self.conv_impl, name=f"conv{i}"
            )(x)
            x = layers.normalize(
                x, self.normalization, train=train, dtype=self.dtype, name=f"norm{i}"
            )
            x = nn.relu(x)
        return x


class Resample(nn.Module):
    """Stride-2 2^d convolution (``up=False``) or transposed convolution (``up=True``), then
    normalisation and ReLU: V-Net's down- and up-sampling blocks."""

    features: int
    up: bool
    normalization: str = "batchnorm"
    dtype: layers.Dtype = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        d = x.ndim - 2
        if self.up:
            x = layers.conv_transpose(self.features, 2, d, dtype=self.dtype, name="conv")(x)
        else:
            x = layers.conv(
                self.features,
                2,
                d,
                strides=2,
                padding=0,
                dtype=self.dtype,
                impl=self.conv_impl,
                name="conv",
            )(x)
        x = layers.normalize(x, self.normalization, train=train, dtype=self.dtype, name="norm")
        return nn.relu(x)


class VNet(nn.Module):
    """V-Net (Milletari et al. 2016) as used by UA-MT, SASSNet and DTML, with two 1^d heads.

    Encoder level ``i`` has ``stages[i]`` conv-norm-ReLU stages with ``n_filters * 2**i``
    features, followed by a stride-2 convolution that doubles the features; the decoder mirrors
    it (decoder level ``i`` also has ``stages[i]`` stages) with stride-2 transposed
    convolutions and additive skip connections. Channel dropout
    (PyTorch ``Dropout3d``) is applied to the bottleneck and to the last decoder block when
    ``has_dropout`` and ``train``. Works in 2D and 3D (from the input's rank).

    Defaults reproduce the SASSNet/DTML network: 9,448,866 parameters for one input channel.

    ``__call__(x, *, train)`` takes ``x`` of shape ``(B, *S, C_in)``, every ``S`` divisible by
    ``2 ** (len(stages) - 1)`` (16 by default), and returns
    ``{"seg": (B, *S, n_classes) logits, "sdm": (B, *S, n_classes) tanh outputs in [-1, 1]}``.
    In training mode it needs a ``"dropout"`` rng when ``has_dropout`` and mutates
    ``"batch_stats"`` with batch normalisation. ``conv_impl`` (one of
    :data:`jaxseg.nn.layers.CONV_IMPLS`) chooses how convolutions are computed, not what.
    ``dtype`` is the computation dtype of the body; the heads compute in at least float32 (with
    ``dtype=bfloat16``: bfloat16 features, float32 outputs).
    """

    n_classes: int = 1
    n_filters: int = 16
    normalization: str = "batchnorm"
    has_dropout: bool = True
    dropout_rate: float = 0.5
    stages: Sequence[int] = (1, 2, 3, 3, 3)
    dtype: layers.Dtype = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        layers.check_normalization(self.normalization)
        depth = len(self.stages)
        layers.check_input(x, x.ndim - 2, 2 ** (depth - 1), "VNet")
        kw = {"normalization": self.normalization, "dtype": self.dtype, "conv_impl": self.conv_impl}
        skips = []
        for level, stages in enumerate(self.stages):
            features = self.n_filters * 2**level
            x = ConvBlock(features, stages, **kw, name=f"encoder{level}")(x, train=train)
            if level < depth - 1:
                skips.append(x)
                x = Resample(2 * features, up=False, **kw, name=f"down{level}")(x, train=train)
        if self.has_dropout:
            x = layers.channel_dropout(x, self.dropout_rate, train=train)
        for level in reversed(range(depth - 1)):
            features = self.n_filters * 2**level
            x = Resample(features, up=True, **kw, name=f"up{level}")(x, train=train)
            x = x + skips[level]
            x = ConvBlock(features, self.stages[level], **kw, name=f"decoder{level}")(
                x, train=train
            )
        if self.has_dropout:
            x = layers.channel_dropout(x, self.dropout_rate, train=train)
        d = x.ndim - 2
        # The heads compute in at least float32 (bfloat16 features, float32 outputs: DTML's
        # sigmoid(-1500 sdm) would turn bfloat16 rounding of the SDM into flipped voxels).
        head_dtype = None if self.dtype is None else jnp.promote_types(self.dtype, jnp.float32)
        head = {"dtype": head_dtype, "impl": self.conv_impl}
        sdm = layers.conv(self.n_classes, 1, d, **head, name="sdm_head")(x)
        seg = layers.conv(self.n_classes, 1, d, **head, name="seg_head")(x)
        return {"seg": seg, "sdm": jnp.tanh(sdm)}
