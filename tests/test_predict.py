"""Inference on files (:mod:`jaxseg.predict`): geometry, folders, checks before inference, and
outputs replaced only by a successful case.

A stand-in method whose "network" is a known function of the image (the sigmoid of its
intensity) makes the geometry exact to check: an image whose intensity is ``R - distance`` to a
world point must be segmented as the ball of radius ``R`` around that point, computed here from
the input's own affine, whatever its spacing and orientation.
"""

from __future__ import annotations

import jax
import nibabel as nib
import numpy as np
import pytest

from jaxseg.data.nifti import save_nifti
from jaxseg.errors import DataError
from jaxseg.predict import list_inputs, plan, predict_paths
from jaxseg.train.config import base_config
from jaxseg.train.method import Method


def _config(spacing=(2.0, 2.0, 2.0)):
    c = base_config()
    c.method = "sigmoid"
    c.data.spacing = spacing
    c.eval.update(patch=(16, 16, 16), stride=(8, 8, 8), batch_size=2)
    return c


def _unsupported(*args):
    raise AssertionError("not used by predict")


SIGMOID = Method(
    name="sigmoid",
    settings=("paper", "smoke"),
    default_config=lambda setting="paper": _config(),
    create_state=_unsupported,
    make_train_step=_unsupported,
    predict=lambda config, nets, images: {"prob": jax.nn.sigmoid(images[..., :1])},
)


def _oblique_affine(spacing, angle=0.3, origin=(-20.0, 15.0, 5.0)):
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def _ball_image(shape, affine, centre_world, radius):
    """Intensity ``radius - |world(x) - centre|`` (mm) and the ball ``distance < radius``."""
    index = np.indices(shape).reshape(3, -1).T
    world = index @ affine[:3, :3].T + affine[:3, 3]
    distance = np.linalg.norm(world - centre_world, axis=1).reshape(shape)
    return (radius - distance).astype(np.float32), distance < radius


def _write(path, array, affine, *, qform=1, sform=2):
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=qform)
    img.set_sform(affine, code=sform)
    nib.save(img, path)
    return path


def test_a_volume_of_another_spacing_and_orientation_overlays_in_world_coordinates(tmp_path):
    """Input at 1.25 x 1.0 x 1.5 mm, rotated; the network works at 2 mm: the label map, on the
    input's grid, is the ball of the input's world coordinates, and the header is the input's."""
    shape, spacing = (40, 48, 32), (1.25, 1.0, 1.5)
    affine = _oblique_affine(spacing)
    centre = affine[:3, :3] @ np.array([20.0, 22.0, 15.0]) + affine[:3, 3]
    image, ball = _ball_image(shape, affine, centre, radius=12.0)
    source = _write(tmp_path / "scan.nii.gz", image, affine)
    request = plan(source, tmp_path / "seg.nii.gz", prob=tmp_path / "prob.nii.gz")
    results = predict_paths(SIGMOID, _config(), None, request, normalize=False, report=str)
    assert results == {"scan": "ok"}
    seg, prob = nib.load(tmp_path / "seg.nii.gz"), nib.load(tmp_path / "prob.nii.gz")
    ref = nib.load(source)
    for out in (seg, prob):
        assert out.shape == shape
        np.testing.assert_allclose(out.affine, affine, atol=1e-5)
        assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 2
        np.testing.assert_allclose(out.header.get_zooms(), ref.header.get_zooms())
    label = np.asarray(seg.dataobj) == 1
    dice = 2 * np.sum(label & ball) / (label.sum() + ball.sum())
    assert dice > 0.97
    # Only the voxels next to the sphere may differ (2 mm resampling, linear both ways).
    assert np.all(np.abs(image[label != ball]) < 2.5)


def _scans(folder, names, shape=(16, 16, 16), spacing=(2.0, 2.0, 2.0)):
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    rng = np.random.default_rng(0)
    for name in names:
        save_nifti(folder / name, rng.normal(size=shape).astype(np.float32), affine)
    return folder


def test_nnunet_channel_suffixes_give_case_ids_and_gaps_are_refused(tmp_path):
    folder = _scans(tmp_path / "in", ["b_0000.nii.gz", "a_0000.nii.gz", "a_0001.nii.gz"])
    cases = list_inputs(folder)
    assert [(c.id, [f.name for f in c.files]) for c in cases] == [
        ("a", ["a_0000.nii.gz", "a_0001.nii.gz"]),
        ("b", ["b_0000.nii.gz"]),
    ]
    (folder / "a_0001.nii.gz").rename(folder / "a_0002.nii.gz")
    with pytest.raises(DataError, match="without gaps"):
        list_inputs(folder)
    plain = _scans(tmp_path / "plain", ["x.nii.gz", "y.nii"])
    assert [c.id for c in list_inputs(plain)] == ["x", "y"]


def test_a_folder_is_predicted_case_by_case_and_a_failure_spares_the_others(tmp_path):
    folder = _scans(tmp_path / "in", ["c1_0000.nii.gz", "c2_0000.nii.gz", "c3_0000.nii.gz"])
    # c2 has a valid header but truncated data: it fails when read, after the check.
    data = (folder / "c2_0000.nii.gz").read_bytes()
    (folder / "c2_0000.nii.gz").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out" / "nested"
    (out).mkdir(parents=True)
    (out / "c2.nii.gz").write_bytes(b"previous")
    lines = []
    request = plan(folder, out)
    results = predict_paths(SIGMOID, _config(), None, request, report=lines.append)
    assert results["c1"] == results["c3"] == "ok" and "c2_0000.nii.gz" in results["c2"]
    assert sorted(p.name for p in out.iterdir()) == ["c1.nii.gz", "c2.nii.gz", "c3.nii.gz"]
    assert (out / "c2.nii.gz").read_bytes() == b"previous"
    assert len(lines) == 3 and "[2/3] c2: failed" in lines[1]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: (d / "x.nii.gz", d / "x.nii.gz", None), "replace an input"),
        (lambda d: (d / "x.nii.gz", d / "o.nii.gz", d / "o.nii.gz"), "both the output"),
        (lambda d: (d / "x.nii.gz", d / "o.txt", None), ".nii or .nii.gz"),
        (lambda d: (d / "x.nii.gz", d / "adir", None), "existing folder"),
        (lambda d: (d / "missing.nii.gz", d / "o.nii.gz", None), "no such file"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_written(tmp_path, make, match):
    _scans(tmp_path, ["x.nii.gz"])
    (tmp_path / "adir.nii.gz").mkdir()
    source, output, prob = make(tmp_path)
    if output.name == "adir":
        output = tmp_path / "adir.nii.gz"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises((ValueError, DataError), match=match):
        plan(source, output, prob=prob)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "header, match",
    [
        ({"dim": [4, 16, 16, 16, 3, 1, 1, 1]}, "3 channel"),
        ({"pixdim": [1, 0.0, 2, 2, 1, 1, 1, 1]}, "positive"),
        ({"dim": [3, 4096, 4096, 4096, 1, 1, 1, 1]}, "more than 2147483648 voxels"),
        ({"dim": [3, 1024, 1024, 1024, 1, 1, 1, 1]}, "file can hold"),
    ],
)
def test_headers_are_checked_before_any_data_is_read(tmp_path, header, match):
    """A 4D image of 3 channels, a zero voxel size (nibabel would read it as 1 mm), and 48 KB
    files claiming 4096^3 and 1024^3 voxels (refused before allocating them)."""
    img = nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), np.eye(4))
    for key, value in header.items():
        img.header[key] = value
    path = tmp_path / "bad.nii"
    img.header.set_data_offset(352)
    with open(path, "wb") as f:
        f.write(img.header.binaryblock + b"\0" * 4 + b"\0" * 16**3 * 3 * 4)
    with pytest.raises(DataError, match=match) as err:
        plan(path, tmp_path / "o.nii.gz")
    assert str(path) in str(err.value)


def test_tta_averages_the_mirrored_predictions(tmp_path):
    """The sigmoid commutes with mirroring: TTA gives the plain prediction back."""
    _scans(tmp_path / "in", ["s.nii.gz"])
    for tta, name in ((False, "plain"), (True, "tta")):
        request = plan(tmp_path / "in", tmp_path / name, prob=tmp_path / f"{name}_prob")
        predict_paths(SIGMOID, _config(()), None, request, tta=tta, report=str)
    plain, tta = (
        np.asarray(nib.load(tmp_path / f"{n}_prob" / "s.nii.gz").dataobj) for n in ("plain", "tta")
    )
    np.testing.assert_allclose(tta, plain, atol=1e-6)
