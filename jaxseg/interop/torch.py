"""Import of the reference PyTorch implementations' weights into jaxseg's Flax modules.

``import_state_dict(name, state_dict)`` maps a reference ``state_dict`` (names as in the
reference code, values as numpy arrays) to Flax ``variables`` for ``reference_module(name)``,
which is the jaxseg module configured like that reference network, so that::

    variables = import_state_dict("vnet", state_dict)
    outputs = reference_module("vnet").apply(variables, image, train=False)

reproduces the reference outputs (channels last). Names, in PyTorch layout:

* ``vnet``: SASSNet/DTML ``VNet(n_channels=1, n_classes=1, n_filters=16,
  normalization="batchnorm", has_dropout=True)`` (``out_conv`` is the SDM head, ``out_conv2``
  the segmentation head);
* ``discriminator3d``: SASSNet ``FC3DDiscriminator(num_classes=1, ndf=64, n_channel=1)``;
* ``unet2d``, ``unet3d``: Atlas-ISTN ``UNet2D(num_classes=2)``, ``UNet3D(num_classes=6)``;
* ``stn2d``, ``stn3d``: Atlas-ISTN ``FullSTN2D((64, 64), 2)``, ``FullSTN3D((64, 64, 64), 10)``.

Every name of the reference must be present and nothing else; shapes must match. Buffers that
carry no learned state (BatchNorm's ``num_batches_tracked``, the STN's normalised ``grid``) are
checked for shape and otherwise ignored. :func:`load_checkpoint` reads a ``.pth`` file with
``torch.load(weights_only=True)`` (PyTorch is an optional dependency, ``pip install
jaxseg[torch]``); nothing is unpickled beyond tensors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.errors import DataError
from jaxseg.nn import AtlasSTN, Discriminator3D, UNet, VNet

__all__ = ["NAMES", "REFERENCE_INPUTS", "import_state_dict", "load_checkpoint", "reference_module"]

NAMES = ("vnet", "discriminator3d", "unet2d", "unet3d", "stn2d", "stn3d")

# Input shapes (batch 1, channels last) that fix each reference network's parameter shapes
# (the STN's linear layer depends on the input size).
REFERENCE_INPUTS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vnet": ((1, 16, 16, 16, 1),),
    "discriminator3d": ((1, 16, 16, 16, 1), (1, 16, 16, 16, 1)),
    "unet2d": ((1, 8, 8, 1),),
    "unet3d": ((1, 8, 8, 8, 1),),
    "stn2d": ((1, 64, 64, 2),),
    "stn3d": ((1, 64, 64, 64, 10),),
}


def reference_module(name: str) -> nn.Module:
    """The jaxseg module configured like the reference network ``name`` (see module doc)."""
    modules: dict[str, Callable[[], nn.Module]] = {
        "vnet": VNet,
        "discriminator3d": Discriminator3D,
        "unet2d": lambda: UNet.itn(2, 2),
        "unet3d": lambda: UNet.itn(3, 6),
        "stn2d": lambda: AtlasSTN(2),
        "stn3d": lambda: AtlasSTN(3),
    }
    if name not in modules:
        raise ValueError(f"unknown reference network {name!r}; expected one of {NAMES}")
    return modules[name]()


# --- name tables: reference name prefix -> (path in jaxseg's params, layer kind) ------------

_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _vnet_table() -> dict[str, tuple[str, str]]:
    table = {}
    for level in range(5):
        blocks = {f"block_{_WORDS[level]}": f"encoder{level}"}
        if level < 4:
            blocks[f"block_{_WORDS[8 - level]}"] = f"decoder{level}"
            table[f"block_{_WORDS[level]}_dw.conv.0"] = (f"down{level}/conv", "conv")
            table[f"block_{_WORDS[level]}_dw.conv.1"] = (f"down{level}/norm", "bn")
            table[f"block_{_WORDS[7 - level]}_up.conv.0"] = (f"up{level}/conv", "convT")
            table[f"block_{_WORDS[7 - level]}_up.conv.1"] = (f"up{level}/norm", "bn")
        stages = VNet.stages[level]
        for torch_block, ours in blocks.items():
            for i in range(stages):
                table[f"{torch_block}.conv.{3 * i}"] = (f"{ours}/conv{i}", "conv")
                table[f"{torch_block}.conv.{3 * i + 1}"] = (f"{ours}/norm{i}", "bn")
    table["out_conv"] = ("sdm_head", "conv")
    table["out_conv2"] = ("seg_head", "conv")
    return table


def _discriminator_table() -> dict[str, tuple[str, str]]:
    table = {"conv0": ("sdm_conv", "conv"), "conv1": ("image_conv", "conv")}
    table |= {f"conv{i + 2}": (f"conv{i}", "conv") for i in range(3)}
    table["classifier"] = ("classifier", "linear")
    return table


def _unet_table() -> dict[str, tuple[str, str]]:
    ours = {
        "conv11": "encoder0_conv0", "conv12": "encoder0_conv1", "down1": "down1",
        "conv21": "encoder1_conv0", "down2": "down2", "conv31": "encoder2_conv0",
        "down3": "down3", "conv41": "encoder3_conv0", "conv32": "decoder2_conv0",
        "conv22": "decoder1_conv0", "conv13": "decoder0_conv0", "conv14": "head",
    }  # fmt: skip
    return {torch_name: (path, "conv") for torch_name, path in ours.items()}


def _stn_table() -> dict[str, tuple[str, str]]:
    convs = ["down1", "conv21", "conv22", "down2", "conv31", "down3", "conv41", "conv32",
             "conv23", "conv24", "conv25"]  # fmt: skip
    table = {c: (c, "conv") for c in convs}
    table["fc"] = ("fc", "fc_channels_first")
    table |= {h: (h, "linear") for h in ("translation", "rotation", "scaling")}
    table["grid"] = ("", "grid")
    return table


_TABLES: dict[str, Callable[[], dict[str, tuple[str, str]]]] = {
    "vnet": _vnet_table,
    "discriminator3d": _discriminator_table,
    "unet2d": _unet_table,
    "unet3d": _unet_table,
    "stn2d": _stn_table,
    "stn3d": _stn_table,
}

# Reference suffixes of each layer kind -> (collection, leaf name in jaxseg); None: ignored.
_LEAVES: dict[str, dict[str, tuple[str, str] | None]] = {
    "conv": {"weight": ("params", "kernel"), "bias": ("params", "bias")},
    "convT": {"weight": ("params", "kernel"), "bias": ("params", "bias")},
    "linear": {"weight": ("params", "kernel"), "bias": ("params", "bias")},
    "fc_channels_first": {"weight": ("params", "kernel"), "bias": ("params", "bias")},
    "bn": {
        "weight": ("params", "scale"),
        "bias": ("params", "bias"),
        "running_mean": ("batch_stats", "mean"),
        "running_var": ("batch_stats", "var"),
        "num_batches_tracked": None,
    },
    "grid": {"": None},
}


def _to_jax_layout(kind: str, leaf: str, value: np.ndarray, target: tuple, extra) -> np.ndarray:
    """A reference array in PyTorch layout -> jaxseg layout of shape ``target``."""
    if leaf != "kernel":
        return value
    if kind in ("conv", "convT"):
        # conv (out, in, *k) -> (*k, in, out); transposed conv (in, out, *k) -> (*k, out, in),
        # the layout of Flax's ConvTranspose(transpose_kernel=True): the same permutation.
        return np.transpose(value, (*range(2, value.ndim), 1, 0))
    if kind == "linear":  # (out, in) -> (in, out)
        return value.T
    # fc after a channels-first flatten: (out, C * P) -> (P * C, out), P = pooled positions.
    channels = extra
    out = value.shape[0]
    pooled = value.reshape(out, channels, -1)
    return np.transpose(pooled, (2, 1, 0)).reshape(target)


def _expected(
    name: str, module: nn.Module | None = None
) -> tuple[dict[str, Any], dict[str, tuple[str, str, str, tuple]]]:
    """jaxseg's variable shapes for ``name`` (of ``module``, default :func:`reference_module`),
    and for every reference name its destination."""
    module = reference_module(name) if module is None else module
    inputs = [jnp.zeros(s) for s in REFERENCE_INPUTS[name]]
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs, train=False))
    shapes = jax.tree.map(lambda x: tuple(x.shape), nn.unbox(shapes))
    destinations = {}
    for prefix, (path, kind) in _TABLES[name]().items():
        for suffix, leaf in _LEAVES[kind].items():
            torch_name = f"{prefix}.{suffix}" if suffix else prefix
            destinations[torch_name] = (path, kind, *(leaf or ("", "")))
    return shapes, destinations


def _torch_shape(kind: str, leaf: str, shape: tuple) -> tuple:
    """The reference shape of a jaxseg leaf of ``shape`` (inverse of the layout change)."""
    if leaf != "kernel":
        return shape
    if kind in ("conv", "convT"):
        return (shape[-1], shape[-2], *shape[:-2])
    return (shape[1], shape[0])


def import_state_dict(
    name: str, state_dict: Mapping[str, Any], *, module: nn.Module | None = None
) -> dict[str, Any]:
    """Flax variables for :func:`reference_module` ``(name)`` from a reference ``state_dict``.

    Args:
      name: one of ``"vnet"``, ``"discriminator3d"``, ``"unet2d"``, ``"unet3d"``, ``"stn2d"``,
        ``"stn3d"``.
      state_dict: the reference parameter and buffer names (PyTorch layout) mapped to arrays
        (numpy, or anything ``np.asarray`` accepts). A ``"module."`` prefix (from
        ``DataParallel``) is not accepted here; :func:`load_checkpoint` strips it.
      module: the jaxseg module to import into when the reference network was built with other
        widths than the default one (e.g. ``VNet(n_filters=8)`` for a V-Net of 8 filters): same
        architecture and names, the shapes checked against this module's. Default
        ``reference_module(name)``.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` (``batch_stats`` only for networks with batch
      normalisation), float32, ready for ``reference_module(name).apply`` (or ``module``'s).

    Raises:
      ValueError: naming the missing, unexpected or mis-shaped entries (the first few of each,
        with their counts).
    """
    if name not in _TABLES:
        raise ValueError(f"unknown reference network {name!r}; expected one of {NAMES}")
    shapes, destinations = _expected(name, module)
    arrays = {k: np.asarray(v) for k, v in state_dict.items()}
    missing = [k for k in destinations if k not in arrays]
    unexpected = [k for k in arrays if k not in destinations]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing entries {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected entries {_first(unexpected)}")

    variables: dict[str, Any] = {}
    for torch_name, (path, kind, collection, leaf) in destinations.items():
        if torch_name not in arrays:
            continue
        value = arrays[torch_name]
        if kind == "grid":
            ndim = len(REFERENCE_INPUTS[name][0]) - 2
            expected = (ndim, *REFERENCE_INPUTS[name][0][1:-1])
        elif not collection:
            continue
        else:
            node = shapes[collection]
            for part in path.split("/"):
                node = node[part]
            target = node[leaf]
            extra = _fc_channels(shapes) if kind == "fc_channels_first" else None
            expected = _torch_shape(kind, leaf, target)
        if value.shape != expected:
            problems.append(f"{torch_name} has shape {value.shape}, expected {expected}")
            continue
        if not collection:
            continue
        converted = _to_jax_layout(kind, leaf, value.astype(np.float32), target, extra)
        node = variables.setdefault(collection, {})
        for part in path.split("/"):
            node = node.setdefault(part, {})
        node[leaf] = jnp.asarray(converted)
    if problems:
        shown = problems[:6] + ([f"{len(problems) - 6} more problems"] if len(problems) > 6 else [])
        raise ValueError(f"state_dict does not match the reference {name!r}: " + "; ".join(shown))
    return variables


def _first(names: list[str], count: int = 5) -> str:
    """The first ``count`` names, and how many more."""
    more = f" and {len(names) - count} more" if len(names) > count else ""
    return f"{names[:count]}{more}"


def _fc_channels(shapes: Mapping[str, Any]) -> int:
    """Channels feeding the STN's fc layer: the features of its deepest convolution."""
    return shapes["params"]["conv41"]["kernel"][-1]


def load_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PyTorch ``.pth`` state_dict as numpy arrays, safely.

    Uses ``torch.load(path, map_location="cpu", weights_only=True)``; a checkpoint saved as
    ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped and a ``"module."`` prefix
    (``DataParallel``) is removed.

    Raises:
      DataError: naming the file, when it is missing, unreadable, not a state_dict, or holds
        non-tensor or non-finite values (half-precision tensors are read as float32).
      ImportError: when PyTorch is not installed.
    """
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            "reading .pth checkpoints needs PyTorch: pip install 'jaxseg[torch]'"
        ) from err
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({detail})") from err
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise DataError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    state = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise DataError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.float()  # bfloat16 and float16 have no exact numpy twin here
        array = value.numpy()
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise DataError(f"{path}: entry {key!r} has non-finite values (NaN or inf)")
        state[re.sub(r"^module\.", "", key)] = array
    return state
