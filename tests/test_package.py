"""Package-level checks: the public API of DESIGN.md exists, and imports point one way."""

import ast
import importlib
import inspect
import re
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
    "jaxseg.priors": [
        "build_spatial_prior", "prior_driven_softmax", "prior_driven_sigmoid", "place_prior",
        "locate_prior", "select_pseudo_labels", "bounding_box",
    ],
    **{
        f"jaxseg.methods.{name}": ["default_config", "create_state", "make_train_step", "predict"]
        for name in ("supervised", "sassnet", "dtml", "stipple", "atlas_istn")
    },
    "jaxseg.methods": ["get_method", "Method"],
    "jaxseg.data.sources": ["load_split", "Split"],
}  # fmt: skip

# DESIGN.md, "Dependency rules": the third-party packages and jaxseg subpackages each part of
# the package may import. The pure core imports only jax/numpy/scipy and itself.
PURE_CORE = ("geometry", "shape", "metrics", "priors", "losses", "inference")
RULES = {
    **{part: ({"jax", "jaxlib", "numpy", "scipy"}, {*PURE_CORE, "errors"}) for part in PURE_CORE},
    "nn": ({"jax", "flax", "numpy"}, {*PURE_CORE, "nn", "errors"}),
    "interop": ({"jax", "flax", "numpy", "torch"}, {*PURE_CORE, "nn", "interop", "errors"}),
    # bench sits on top (shipped so that an install can run it): anything in jaxseg but the CLI,
    # optax for the nets suite's optimizer, the optional peers, and viz for the scaling plot.
    "bench": (
        {"jax", "numpy", "scipy", "optax", "torch", "monai", "medpy", "skimage"},
        {*PURE_CORE, "nn", "interop", "data", "train", "methods", "demo", "bench", "atomic"}
        | {"errors", "viz"},
    ),
    # absl: grain's worker processes need its flags parsed (see jaxseg.data.pipeline).
    "data": (
        {"jax", "numpy", "scipy", "grain", "nibabel", "h5py", "PIL", "absl", "matplotlib"},
        {*PURE_CORE, "data", "atomic", "errors"},
    ),
    # train is generic: it reads data through the source registry and the pipelines only (no
    # reader; the resampling of data.preprocess to score at a case's own grid), runs the pure
    # core, and never imports a network, a method or a config.
    "train": (
        {"jax", "flax", "optax", "orbax", "numpy", "ml_collections", "tqdm", "matplotlib"}
        | {"tensorboardX"},
        {*PURE_CORE, "data.sources", "data.pipeline", "data.case", "data.preprocess", "train"}
        | {"viz", "atomic", "errors"},
    ),
    "methods": (
        # tqdm: progress of a method's own evaluation loop (Atlas-ISTN's per-case refinement).
        {"jax", "flax", "optax", "numpy", "ml_collections", "tqdm"},
        # atomic: files a method writes during training (STIPPLE's pseudo-labels).
        {*PURE_CORE, "nn", "interop", "train", "data", "configs", "methods", "viz", "errors"}
        | {"atomic"},
    ),
    # The shipped configs: values on the engine's base config, nothing else.
    "configs": ({"ml_collections"}, {"configs", "train.config"}),
    # viz: the figures every method shares; numpy, matplotlib and the pure core only.
    "viz": ({"numpy", "matplotlib"}, {*PURE_CORE, "atomic"}),
    # atomic file writes: the standard library only.
    "atomic": (set(), set()),
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


def _allowed(module: str, internal: set[str]) -> bool:
    """Whether ``jaxseg.<module>`` is covered by an entry of ``internal`` (a subpackage, or a
    dotted module such as ``data.sources``)."""
    parts = module.split(".")
    return any(".".join(parts[:n]) in internal for n in range(1, len(parts) + 1))


def violations(part: str, paths) -> list[str]:
    """The imports of ``paths`` (files of ``part``) that break ``RULES[part]``."""
    third_party, internal = RULES[part]
    stdlib = sys.stdlib_module_names
    found = []
    for path in paths:
        for name in _imports(path):
            top, _, rest = name.partition(".")
            if top == "jaxseg":
                if not _allowed(rest, internal):
                    found.append(f"{path.name} imports {name}")
            elif top not in stdlib and top not in third_party:
                found.append(f"{path.name} imports {name}")
    return found


@pytest.mark.parametrize("part", sorted(RULES))
def test_imports_point_one_way(part):
    paths = sorted((PACKAGE / part).rglob("*.py")) + sorted(PACKAGE.glob(f"{part}.py"))
    if not paths:
        pytest.skip(f"jaxseg.{part} does not exist yet")
    assert violations(part, paths) == []


@pytest.mark.parametrize(
    "part,line",
    [
        ("train", "from jaxseg.methods import sassnet"),
        ("train", "from jaxseg.data.la_h5 import load_la_case"),
        ("train", "import jaxseg.nn"),
        ("methods", "from jaxseg import cli"),
        ("geometry", "import flax"),
        ("configs", "from jaxseg.methods import dtml"),
    ],
)
def test_a_planted_violation_is_found(part, line, tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(f"import os\n{line}\n")
    found = violations(part, [planted])
    assert len(found) == 1 and found[0].startswith("planted.py imports ")


def test_the_engine_names_no_method_and_no_data_source():
    from jaxseg.data.sources import SOURCES
    from jaxseg.methods import METHODS

    words = [*METHODS, *SOURCES, "vnet", "v-net", "atlas"]
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, words)) + r")(?![\w-])", re.I)
    for path in sorted((PACKAGE / "train").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{path.name}:{number}: {line.strip()}"


def test_no_sys_path_manipulation_and_modules_a_reader_can_hold():
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        assert "sys.path" not in text, path
        assert len(text.splitlines()) <= 600, f"{path.relative_to(PACKAGE)}: over 600 lines"
