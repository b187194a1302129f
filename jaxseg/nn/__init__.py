"""Flax Linen networks of the four methods, channels last, 2D and 3D.

Every module takes ``train`` as a keyword argument of ``__call__`` and returns a dict of
outputs; nothing is stored on the module. Defaults and presets reproduce the reference
PyTorch networks exactly (parameter counts included); :mod:`jaxseg.interop.torch` imports
their weights.
"""

from jaxseg.nn.discriminator import Discriminator3D
from jaxseg.nn.stn import AtlasSTN
from jaxseg.nn.unet import UNet
from jaxseg.nn.vnet import VNet

__all__ = ["AtlasSTN", "Discriminator3D", "UNet", "VNet"]
