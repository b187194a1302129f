"""The reference networks' parameter names, shapes and counts (``data/torch-names.txt``).

Torch-free, so that parameter counts are checked without PyTorch installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

NAMES_FILE = Path(__file__).parent / "data" / "torch-names.txt"
NETWORKS = ("vnet", "discriminator3d", "unet2d", "unet3d", "stn2d", "stn3d")


def parse_torch_names(path: str | Path | None = None) -> dict[str, dict]:
    """Parse the names file into ``{key: {"count", "shapes", "header"}}`` (ordered)."""
    nets: dict[str, dict] = {}
    current = None
    for raw in Path(path or NAMES_FILE).read_text().splitlines():
        line = raw.strip()
        if line.startswith("## "):
            key, _, header = line[3:].partition(":")
            current = nets[key.strip()] = {"count": None, "shapes": {}, "header": header.strip()}
        elif line.startswith("# trainable parameters:") and current is not None:
            current["count"] = int(line.split(":", 1)[1])
        elif line and not line.startswith("#") and current is not None:
            name, shape = line.split(maxsplit=1)
            current["shapes"][name] = tuple(ast.literal_eval(shape))
    return nets
