"""``jaxseg evaluate --pred DIR --ref DIR``: folders of label maps scored without a run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from jaxseg.cli import main
from jaxseg.data.nifti import save_nifti
from jaxseg.errors import DataError
from jaxseg.scoring import score_folders

SPACING = (0.8, 1.0, 2.5)


def _ball(shape, centre, radius):
    grid = np.indices(shape).transpose(1, 2, 3, 0) * np.asarray(SPACING)
    return (np.linalg.norm(grid - np.asarray(centre) * SPACING, axis=-1) < radius).astype(np.uint8)


def _folders(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    affine = np.diag([*SPACING, 1.0])
    shape = (40, 36, 16)
    pairs = {}
    for i, shift in enumerate((0, 2, 4)):
        r = _ball(shape, (20, 18, 8), 9.0)
        p = _ball(shape, (20 + shift, 18, 8), 8.0)
        save_nifti(ref / f"case{i}.nii.gz", r, affine)
        save_nifti(pred / f"case{i}.nii.gz", p, affine)
        pairs[f"case{i}"] = (p, r)
    save_nifti(ref / "lonely.nii.gz", _ball(shape, (10, 10, 8), 5.0), affine)
    save_nifti(pred / "stray.nii.gz", _ball(shape, (10, 10, 8), 5.0), affine)
    return pred, ref, pairs


def _surface_distances(a, b, spacing):
    """Distances (mm) from the surface voxels of ``a`` to those of ``b`` (medpy's definition)."""
    surface_a = a & ~ndimage.binary_erosion(a, ndimage.generate_binary_structure(3, 1))
    surface_b = b & ~ndimage.binary_erosion(b, ndimage.generate_binary_structure(3, 1))
    dist = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    return dist[surface_a]


def test_folder_scores_equal_direct_computations(tmp_path):
    pred, ref, pairs = _folders(tmp_path)
    summary = score_folders(pred, ref, out_dir=tmp_path / "out")
    assert summary["missing"] == ["lonely"] and summary["extra"] == ["stray"]
    assert [c["id"] for c in summary["cases"]] == ["case0", "case1", "case2"]
    for case in summary["cases"]:
        p, r = (x.astype(bool) for x in pairs[case["id"]])
        assert case["dice"] == pytest.approx(2 * (p & r).sum() / (p.sum() + r.sum()), abs=1e-12)
        assert case["jaccard"] == pytest.approx((p & r).sum() / (p | r).sum(), abs=1e-12)
        both = np.concatenate(
            [_surface_distances(p, r, SPACING), _surface_distances(r, p, SPACING)]
        )
        assert case["hd95"] == pytest.approx(np.percentile(both, 95), rel=1e-6)
        voxels = np.concatenate([_surface_distances(p, r, 1.0), _surface_distances(r, p, 1.0)])
        assert case["hd95_voxels"] == pytest.approx(np.percentile(voxels, 95), rel=1e-6)
    assert summary["mean"]["dice"] == pytest.approx(np.mean([c["dice"] for c in summary["cases"]]))
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["mean"]["dice"] == pytest.approx(summary["mean"]["dice"])
    with open(tmp_path / "out" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["case0", "case1", "case2"]
    assert float(rows[1]["dice"]) == pytest.approx(summary["cases"][1]["dice"], rel=1e-5)


def test_pairs_on_different_grids_are_refused_naming_the_files(tmp_path):
    pred, ref, _ = _folders(tmp_path)
    save_nifti(pred / "case1.nii.gz", np.zeros((40, 36, 16), np.uint8), np.diag([1, 1, 1, 1.0]))
    with pytest.raises(DataError, match=r"case1\.nii\.gz: not on the grid"):
        score_folders(pred, ref)
    with pytest.raises(DataError, match="does not exist"):
        score_folders(tmp_path / "nowhere", ref)


def test_cli_scores_folders_and_fails_on_missing_predictions(tmp_path, capsys):
    pred, ref, _ = _folders(tmp_path)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--labels", "1"]) == 1
    out = capsys.readouterr().out
    assert "test: dice" in out and "without a prediction: lonely" in out
    assert (pred / "summary.json").is_file() and (pred / "metrics.csv").is_file()
    (ref / "lonely.nii.gz").unlink()
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref)]) == 0
    assert main(["evaluate", "--pred", str(pred)]) == 2
    assert "--ref" in capsys.readouterr().err
