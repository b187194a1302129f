"""SASSNet (Li, Zhang, He, MICCAI 2020) on LA: the config shipped as ``jaxseg.configs.sassnet``
(``jaxseg train sassnet:SETTING``).

The values live in jaxseg/configs/sassnet.py (on the LA base jaxseg/configs/la.py), so that a
pip install has them too; this file is the same config by path. Settings: paper, paper8,
cpu, synthetic, smoke. Commands::

    jaxseg train experiments/sassnet/configs/la.py:paper --workdir runs/sassnet16 \
        --set data.root=DIR \
        --seeds 0,1,2
    jaxseg train experiments/sassnet/configs/la.py:cpu --workdir runs/la_cpu/sassnet \
        --set data.root=DIR --seeds 0,1,2
    jaxseg train experiments/sassnet/configs/la.py:smoke --workdir runs/sassnet_smoke

Expected: the paper reports 89.27 Dice at 16 labels (89.54 with the largest component) and 86.81
at 8 (87.32); the built-in-phantom comparison (`synthetic`) is in experiments/README.md. The
smoke setting runs in about a minute on 2 CPU cores and only checks that everything works.
"""

from jaxseg.configs.sassnet import SETTINGS, get_config

__all__ = ["SETTINGS", "get_config"]
