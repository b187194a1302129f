"""DTML (Zhang & Zhang 2021) on LA: the config shipped as ``jaxseg.configs.dtml`` (``jaxseg train
dtml:SETTING``).

The values live in jaxseg/configs/dtml.py (on the LA base jaxseg/configs/la.py), so that a pip
install has them too; this file is the same config by path. Settings: paper, paper8,
cpu, synthetic, smoke. Commands::

    jaxseg train experiments/dtml/configs/la.py:paper --workdir runs/dtml16 \
        --set data.root=DIR \
        --seeds 0,1,2
    jaxseg train experiments/dtml/configs/la.py:cpu --workdir runs/la_cpu/dtml \
        --set data.root=DIR --seeds 0,1,2
    jaxseg train experiments/dtml/configs/la.py:smoke --workdir runs/dtml_smoke

Expected: the paper reports 90.12 Dice, 82.14 Jaccard, 1.82 ASD and 7.01 95HD (voxels) at 16
labels; the built-in-phantom comparison (`synthetic`) is in experiments/README.md. The smoke
setting runs in about a minute on 2 CPU cores and only checks that everything works.
"""

from jaxseg.configs.dtml import SETTINGS, get_config

__all__ = ["SETTINGS", "get_config"]
