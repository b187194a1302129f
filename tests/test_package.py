"""Package-level checks: the public API of DESIGN.md exists, and imports point one way."""

import ast
import importlib
import inspect
import sys
from pathlib import Path

import pytest

import jaxseg

PACKAGE = Path(jaxseg.__file__).parent

PUBLIC_API = {
    "jaxseg.geometry": [
        "identity_grid", "warp", "integrate_svf", "compose", "resize_field", "affine_matrix",
        "affine_disp", "jacobian_determinant", "folding_fraction",
    ],
    "jaxseg.shape": ["signed_distance_map", "sdm_to_mask"],
    "jaxseg.nn": ["VNet", "Discriminator3D", "UNet", "AtlasSTN"],
    "jaxseg.interop.torch": ["import_state_dict", "reference_module", "load_checkpoint"],
    "jaxseg.metrics": [
        "dice", "jaccard", "hd95", "hausdorff", "asd", "assd", "evaluate_case",
        "largest_component", "inverse_consistency",
    ],
    "jaxseg.inference": ["sliding_window"],
    **{
        f"jaxseg.methods.{name}": ["default_config", "create_state", "make_train_step", "predict"]
        for name in ("supervised", "sassnet", "dtml")
    },
}  # fmt: skip

# DESIGN.md, "Dependency rules": the third-party packages and jaxseg subpackages each part of
# the package may import. The pure core imports only jax/numpy/scipy and itself.
PURE_CORE = ("geometry", "shape", "metrics", "priors", "losses", "inference")
RULES = {
    **{part: ({"jax", "jaxlib", "numpy", "scipy"}, {*PURE_CORE, "errors"}) for part in PURE_CORE},
    "nn": ({"jax", "flax", "numpy"}, {*PURE_CORE, "nn", "errors"}),
    "interop": ({"jax", "flax", "numpy", "torch"}, {*PURE_CORE, "nn", "interop", "errors"}),
    # absl: grain's worker processes need its flags parsed (see jaxseg.data.pipeline).
    "data": (
        {"jax", "numpy", "scipy", "grain", "nibabel", "h5py", "PIL", "absl", "matplotlib"},
        {*PURE_CORE, "data", "errors"},
    ),
    # train is generic: it may read data and run the pure core, never a network or a method.
    "train": (
        {"jax", "flax", "optax", "orbax", "numpy", "ml_collections", "tqdm", "matplotlib"}
        | {"tensorboardX"},
        {*PURE_CORE, "data", "train", "viz", "errors"},
    ),
    "methods": (
        # tqdm: progress of a method's own evaluation loop (Atlas-ISTN's per-case refinement).
        {"jax", "flax", "optax", "numpy", "ml_collections", "tqdm"},
        {*PURE_CORE, "nn", "train", "data", "methods", "viz", "errors"},
    ),
    # viz: the figures every method shares; numpy, matplotlib and the pure core only.
    "viz": ({"numpy", "matplotlib"}, {*PURE_CORE}),
}


@pytest.mark.parametrize("module", sorted(PUBLIC_API))
def test_public_names_exist_and_are_documented(module):
    mod = importlib.import_module(module)
    for name in PUBLIC_API[module]:
        obj = getattr(mod, name)
        assert callable(obj), f"{module}.{name}"
        assert inspect.getdoc(obj) and len(inspect.getdoc(obj)) > 40, f"{module}.{name} docstring"
        assert name in mod.__all__, f"{module}.__all__ lacks {name}"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "jaxseg":  # from jaxseg import geometry
                names.update(f"jaxseg.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


@pytest.mark.parametrize("part", sorted(RULES))
def test_imports_point_one_way(part):
    third_party, internal = RULES[part]
    stdlib = sys.stdlib_module_names
    paths = sorted((PACKAGE / part).rglob("*.py")) + sorted(PACKAGE.glob(f"{part}.py"))
    for path in paths:
        for name in _imports(path):
            top, _, rest = name.partition(".")
            if top == "jaxseg":
                assert rest.split(".")[0] in internal, f"{path.name} imports {name}"
            else:
                assert top in stdlib or top in third_party, f"{path.name} imports {name}"
