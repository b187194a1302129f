"""The supervised V-Net baseline on LA (labelled cases only): the config shipped as
``jaxseg.configs.supervised`` (``jaxseg train supervised:SETTING``).

The values live in jaxseg/configs/supervised.py (on the LA base jaxseg/configs/la.py), so that a
pip install has them too; this file is the same config by path. Settings: paper, paper8,
cpu, synthetic, smoke. Commands::

    jaxseg train experiments/supervised/configs/la.py:paper --workdir runs/supervised16 \
        --set data.root=DIR \
        --seeds 0,1,2
    jaxseg train experiments/supervised/configs/la.py:cpu --workdir runs/la_cpu/supervised \
        --set data.root=DIR --seeds 0,1,2
    jaxseg train experiments/supervised/configs/la.py:smoke --workdir runs/supervised_smoke

Expected: SASSNet's table reports 86.03 Dice at 16 labels and 79.99 at 8 for this baseline; on
the built-in phantoms (`synthetic`, 3 seeds, evaluated at the best validation checkpoint) see
experiments/README.md. The smoke setting runs in about a minute on 2 CPU cores and only checks
that everything works.
"""

from jaxseg.configs.supervised import SETTINGS, get_config

__all__ = ["SETTINGS", "get_config"]
