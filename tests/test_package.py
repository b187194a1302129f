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
    "jaxseg.metrics": [
        "dice", "jaccard", "hd95", "hausdorff", "asd", "assd", "evaluate_case",
        "largest_component", "inverse_consistency",
    ],
}  # fmt: skip

# The pure core may import only these third-party packages (DESIGN.md, "Dependency rules").
PURE_CORE = ("geometry", "shape", "metrics", "priors", "losses", "inference")
PURE_THIRD_PARTY = {"jax", "jaxlib", "numpy", "scipy"}


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
            names.add(node.module)
    return names


def test_pure_core_imports_only_jax_numpy_scipy_and_itself():
    stdlib = sys.stdlib_module_names
    checked = 0
    for sub in PURE_CORE:
        for path in sorted((PACKAGE / sub).rglob("*.py")) + sorted(PACKAGE.glob(f"{sub}.py")):
            checked += 1
            for name in _imports(path):
                top = name.split(".")[0]
                if top == "jaxseg":
                    inner = name.split(".")[1] if "." in name else ""
                    assert inner in (*PURE_CORE, "errors"), f"{path.name} imports {name}"
                else:
                    assert top in stdlib or top in PURE_THIRD_PARTY, f"{path.name} imports {name}"
    assert checked >= 10
