"""SASSNet's discriminator: is a signed distance map from a labelled or an unlabelled volume?"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.nn import layers


class Discriminator3D(nn.Module):
    """Fully convolutional discriminator on (SDM, image) pairs (SASSNet, Li et al. 2020).

    A 4^d stride-2 convolution of the SDM and one of the image are added, then three more 4^d
    stride-2 convolutions (``ndf`` x 2, 4, 8 features), each after LeakyReLU(0.2) and channel
    dropout; a last LeakyReLU, a global average pool and a linear layer give two logits. The
    reference hard-codes the pool for 112x112x80 inputs; the global mean equals it there and
    accepts any size divisible by 16. Defaults: 11,020,290 parameters.

    ``__call__(sdm, image, *, train)``: ``sdm`` ``(B, *S, n_classes)`` and ``image``
    ``(B, *S, C)``, ``S`` divisible by 16; returns ``{"logits": (B, 2)}``. In training mode it
    needs a ``"dropout"`` rng. ``conv_impl``: see :data:`jaxseg.nn.layers.CONV_IMPLS`.
    """

    ndf: int = 64
    dropout_rate: float = 0.5
    dtype: layers.Dtype = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, sdm: jax.Array, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        d = sdm.ndim - 2
        layers.check_input(sdm, d, 16, "Discriminator3D (sdm)")
        layers.check_input(image, d, 16, "Discriminator3D (image)")
        if sdm.shape[:-1] != image.shape[:-1]:
            raise ValueError(
                f"sdm and image must share batch and spatial shape, got {sdm.shape} and "
                f"{image.shape}"
            )

        def down(features: int, name: str):
            return layers.conv(
                features,
                4,
                d,
                strides=2,
                padding=1,
                dtype=self.dtype,
                impl=self.conv_impl,
                name=name,
            )

        x = down(self.ndf, "sdm_conv")(sdm) + down(self.ndf, "image_conv")(image)
        for i, mult in enumerate((2, 4, 8)):
            x = nn.leaky_relu(x, 0.2)
            x = layers.channel_dropout(x, self.dropout_rate, train=train)
            x = down(self.ndf * mult, f"conv{i}")(x)
        x = nn.leaky_relu(x, 0.2)
        x = jnp.mean(x, axis=tuple(range(1, d + 1)))
        logits = nn.Dense(
            2, kernel_init=layers.TORCH_KERNEL_INIT, dtype=self.dtype, name="classifier"
        )(x)
        return {"logits": logits}
