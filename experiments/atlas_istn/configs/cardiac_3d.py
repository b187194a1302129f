"""The config shipped as ``jaxseg.configs.atlas_istn_3d`` (``jaxseg train atlas_istn_3d:SETTING``).

Atlas-ISTN in 3D on the built-in multi-structure cardiac-like phantoms (5 structures).

Settings:

* ``paper``: the released synth3d config.json: 64^3 at spacing 2, 800 epochs of batch 10,
  Adam 1e-3 halved every 400 epochs, fade-in at epoch 200, lambda 500, atlas rate 0.01, 50
  refinement iterations; 200 training and 40 test phantoms.
* ``cpu``: 40 training phantoms at 32^3, 40 epochs of batch 2 (800 steps).
* ``smoke``: 8 phantoms at 32^3, 2 epochs.

Any NIfTI data set in the Medical Segmentation Decathlon or nnU-Net raw layout can be used
instead: ``--set data.source=nifti --set data.root=DIR --set data.num_classes=K
--set "data.size=(128,128,128)" --set data.labelled=N --set data.test=M`` (the test set is
imagesTs/labelsTs when both exist, otherwise ``data.test`` training cases held out by
``data.split_seed``; ``data.labelled`` of the others, in a seeded order, are trained on;
every case is resampled to ``data.size`` and z-scored)::

    jaxseg train experiments/atlas_istn/configs/cardiac_3d.py:smoke --workdir runs/cardiac
"""

from jaxseg.configs.atlas_istn_3d import SETTINGS, get_config

__all__ = ["SETTINGS", "get_config"]
