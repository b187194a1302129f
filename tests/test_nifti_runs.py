"""Every method trains and evaluates on the user's own NIfTI data, from the CLI: a Medical
Segmentation Decathlon folder and an nnU-Net raw folder made from the built-in multi-structure
phantoms, with no test split given (the seeded split of the training cases is used, and written
to the run directory)."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxseg.cli import main
from jaxseg.data import synthetic
from jaxseg.data.nifti import save_nifti

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CASES = 6


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``{"msd": root, "nnunet": root}``, the same 6 cardiac-like phantoms (labels 0..5, 32^3 at
    4 mm) in both layouts."""
    cases = synthetic.dataset("cardiac_like", CASES, seed=3, shape=(32, 32, 32), spacing=(4.0,) * 3)
    roots = {}
    for layout in ("msd", "nnunet"):
        root = tmp_path_factory.mktemp(layout)
        (root / "imagesTr").mkdir()
        (root / "labelsTr").mkdir()
        for i, case in enumerate(cases):
            name = f"heart_{i:03d}"
            affine = np.diag([4.0, 4.0, 4.0, 1.0])
            image = f"{name}_0000.nii.gz" if layout == "nnunet" else f"{name}.nii.gz"
            save_nifti(root / "imagesTr" / image, case.image[..., 0], affine)
            save_nifti(root / "labelsTr" / f"{name}.nii.gz", case.label.astype(np.uint8), affine)
        if layout == "nnunet":
            (root / "dataset.json").write_text(
                json.dumps(
                    {
                        "channel_names": {"0": "CT"},
                        "labels": {"background": 0, "lv": 1, "myo": 2, "rv": 3, "la": 4, "ra": 5},
                        "numTraining": CASES,
                        "file_ending": ".nii.gz",
                    }
                )
            )
        roots[layout] = root
    return roots


VNET = ["data.test=2", "data.labelled=2", "data.val=0", "data.labels=(1,)"]
VNET += ["data.intensity=zscore", "train.steps=2", "train.eval_every=0", "train.checkpoint_every=2"]
ATLAS = ["data.test=2", "data.labelled=4", "data.num_classes=6", "train.epochs=1"]
ATLAS += ["data.labelled_batch=2"]
STIPPLE = ["data.test=2", "data.labelled=2", "data.val=0", "data.labels=(1,)", "train.steps=2"]
STIPPLE += ["train.eval_every=0", "train.checkpoint_every=2"]
RUNS = {
    "supervised": ("supervised:smoke", VNET),
    "stipple": ("stipple:smoke", STIPPLE),
    "sassnet": ("sassnet:smoke", VNET),
    "dtml": ("dtml:smoke", VNET),
    "atlas_istn": (str(ROOT / "experiments/atlas_istn/configs/cardiac_3d.py:smoke"), ATLAS),
}


@pytest.mark.parametrize("layout", ["msd", "nnunet"])
@pytest.mark.parametrize("method", sorted(RUNS))
def test_train_and_evaluate_on_a_nifti_folder(method, layout, folders, tmp_path):
    config, overrides = RUNS[method]
    sets = ["data.source=nifti", f"data.root={folders[layout]}", *overrides]
    argv = ["train", config, "--workdir", str(tmp_path), "--no-progress"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    split = json.loads((tmp_path / "split.json").read_text())
    test_ids = split["test"]["test"]
    train_ids = split["labelled"] + split["unlabelled"] + split["val"]
    assert len(test_ids) == 2 and not set(test_ids) & set(train_ids)
    assert len(set(train_ids)) == len(train_ids) >= 2
    assert set(test_ids + train_ids) <= {f"heart_{i:03d}" for i in range(CASES)}
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    evaluated = result["cases"] if "cases" in result else result["test"]["itn"]["cases"]
    assert sorted(c["id"] for c in evaluated) == sorted(test_ids)
    # evaluate reuses the run's split.
    assert main(["evaluate", "--workdir", str(tmp_path), "--no-progress"]) == 0
