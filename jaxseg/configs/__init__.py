"""The experiment configs shipped with jaxseg, one module per name (``jaxseg configs``).

``jaxseg train NAME[:setting]`` loads ``jaxseg.configs.NAME.get_config(setting)``; the files
under ``experiments/<method>/configs/`` import these and document the command and the expected
result. :mod:`jaxseg.configs.la` is the base the Left Atrium configs share.
"""

#: The configs ``jaxseg train NAME[:setting]`` accepts (``la`` is a base, not a method's).
NAMES = ("supervised", "sassnet", "dtml", "stipple", "atlas_istn", "atlas_istn_3d")
