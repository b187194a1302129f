"""Atlas-ISTN in 3D on the built-in multi-structure cardiac-like phantoms (5 structures), or on
any NIfTI folder (``--set data.source=nifti --set data.root=DIR --set data.num_classes=K``).

Settings ``paper`` (the released synth3d config.json: 64^3, 800 epochs of batch 10), ``cpu``
(40 phantoms at 32^3, 40 epochs of batch 2) and ``smoke``; see :mod:`jaxseg.configs.atlas_istn`.
"""

from jaxseg.configs.atlas_istn import SETTINGS, config

__all__ = ["SETTINGS", "get_config"]


def get_config(setting: str = "paper"):
    return config(setting, "cardiac_like")
