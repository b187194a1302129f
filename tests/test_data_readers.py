"""Readers (NIfTI, LA h5, PNG) on files written here, their errors, and preprocessing."""

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from jaxseg.data.case import Case
from jaxseg.data.la_h5 import (
    LA_SPACING,
    la_list_cases,
    la_partition,
    la_split,
    load_la_case,
)
from jaxseg.data.layouts import decathlon_cases, paired_cases
from jaxseg.data.nifti import load_case, save_nifti
from jaxseg.data.png2d import load_png_case, png_list_cases
from jaxseg.data.preprocess import (
    clip_and_zscore,
    one_hot,
    resample_onto,
    resample_to_shape,
    resample_to_spacing,
    zscore,
)
from jaxseg.errors import DataError

LETTER_B = Path(__file__).resolve().parents[2] / "shared" / "data" / "atlas-istn-synth2d"

# An oblique, anisotropic, translated voxel-to-world matrix (spacing 0.8 x 1.2 x 2.5 mm).
SPACING = (0.8, 1.2, 2.5)
c, s = np.cos(0.3), np.sin(0.3)
AFFINE = np.array(
    [
        [c * 0.8, -s * 1.2, 0.0, -40.5],
        [s * 0.8, c * 1.2, 0.0, 12.25],
        [0.0, 0.0, 2.5, 101.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def write_nifti(path, data, affine=AFFINE, dtype=None):
    img = nib.Nifti1Image(np.asarray(data), affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return Path(path)


def nifti_pair(tmp_path, rng, shape=(7, 6, 5), name="case"):
    image = rng.normal(100.0, 30.0, size=shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[2:5, 1:4, 1:4] = 1
    label[3, 2, 2] = 2
    return (
        write_nifti(tmp_path / f"{name}_img.nii.gz", image),
        write_nifti(tmp_path / f"{name}_lab.nii.gz", label, dtype=np.uint8),
        image,
        label,
    )


def truncate(path, keep=0.5):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


# --- NIfTI -----------------------------------------------------------------------------------


def test_nifti_round_trip_keeps_affine_spacing_and_header(tmp_path, rng):
    image_path, label_path, image, label = nifti_pair(tmp_path, rng)
    case = load_case(image_path, label_path)
    assert isinstance(case, Case)
    assert case.id == "case_img"
    assert case.image.shape == (7, 6, 5, 1) and case.image.dtype == np.float32
    np.testing.assert_array_equal(case.image[..., 0], image)
    np.testing.assert_array_equal(case.label, label)
    assert case.label.dtype == np.int32
    np.testing.assert_allclose(case.spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(case.affine, AFFINE, atol=1e-5)
    assert str(image_path) in case.source

    out = save_nifti(tmp_path / "pred.nii.gz", case.label, case.affine, reference=image_path)
    ref, back = nib.load(image_path), nib.load(out)
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-6)
    np.testing.assert_allclose(back.header.get_zooms(), ref.header.get_zooms())
    assert back.header.get_xyzt_units() == ref.header.get_xyzt_units()
    assert int(back.header["sform_code"]) == int(ref.header["sform_code"])
    assert int(back.header["qform_code"]) == int(ref.header["qform_code"])
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), label)
    # What jaxseg writes, jaxseg reads back identically.
    again = load_case(out, case_id="pred")
    np.testing.assert_allclose(again.affine, case.affine, atol=1e-6)
    np.testing.assert_allclose(again.spacing, case.spacing, rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "case_img.nii.gz", "case_lab.nii.gz", "pred.nii.gz",
    ]  # fmt: skip


def test_nifti_4d_image_is_channels_last_and_scaling_is_applied(tmp_path, rng):
    data = rng.integers(-1000, 1000, size=(5, 4, 3, 2)).astype(np.int16)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, -10.0)
    nib.save(img, tmp_path / "ct.nii")
    case = load_case(tmp_path / "ct.nii")
    assert case.image.shape == (5, 4, 3, 2)
    np.testing.assert_allclose(case.image, data * 0.5 - 10.0)
    assert case.spacing == (2.0, 2.0, 3.0) and case.label is None


def test_save_nifti_float_without_reference(tmp_path, rng):
    array = rng.normal(size=(4, 5, 6, 2))
    out = save_nifti(tmp_path / "x.nii", array, AFFINE)
    back = nib.load(out)
    assert back.get_data_dtype() == np.float32
    np.testing.assert_allclose(np.asanyarray(back.dataobj), array.astype(np.float32))
    np.testing.assert_allclose(back.affine, AFFINE, atol=1e-6)
    with pytest.raises(ValueError, match=r"\.nii"):
        save_nifti(tmp_path / "x.png", array, AFFINE)


def test_save_nifti_never_leaves_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "pred.nii.gz"
    save_nifti(target, np.ones((3, 3, 3), np.uint8), np.eye(4))
    before = target.read_bytes()

    def broken_save(img, filename):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_nifti(target, np.zeros((3, 3, 3), np.uint8), np.eye(4))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pred.nii.gz"]


def _bad_nifti(tmp_path, rng, problem):
    """Write a case with one problem; return (kwargs for load_case, file named, message)."""
    image_path, label_path, image, label = nifti_pair(tmp_path, rng)
    kwargs = {"image_path": image_path, "label_path": label_path}
    if problem == "missing image":
        kwargs["image_path"] = tmp_path / "nope.nii.gz"
        return kwargs, "nope.nii.gz", "not found"
    if problem == "missing label":
        kwargs["label_path"] = tmp_path / "nolabel.nii.gz"
        return kwargs, "nolabel.nii.gz", "not found"
    if problem == "truncated gz":
        truncate(image_path)
        return kwargs, image_path.name, "truncated or corrupt"
    if problem == "truncated nii":
        path = write_nifti(tmp_path / "raw.nii", image)
        kwargs["image_path"] = truncate(path, 0.7)
        return kwargs, "raw.nii", "truncated or corrupt"
    if problem == "garbage":
        (tmp_path / "junk.nii.gz").write_bytes(b"this is not a nifti file at all")
        kwargs["image_path"] = tmp_path / "junk.nii.gz"
        return kwargs, "junk.nii.gz", "not a NIfTI file"
    if problem == "shape mismatch":
        kwargs["label_path"] = write_nifti(tmp_path / "small.nii.gz", label[:-1])
        return kwargs, "small.nii.gz", "does not match image shape"
    if problem == "affine mismatch":
        moved = AFFINE.copy()
        moved[0, 3] += 1.0
        kwargs["label_path"] = write_nifti(tmp_path / "moved.nii.gz", label, moved)
        return kwargs, "moved.nii.gz", "affine differs"
    if problem == "non-finite":
        bad = image.copy()
        bad[1, 1, 1] = np.nan
        kwargs["image_path"] = write_nifti(tmp_path / "nan.nii.gz", bad)
        return kwargs, "nan.nii.gz", "non-finite"
    if problem == "out of range":
        kwargs["num_classes"] = 2
        return kwargs, label_path.name, "outside range(2)"
    if problem == "empty label":
        kwargs["label_path"] = write_nifti(tmp_path / "empty.nii.gz", np.zeros_like(label))
        kwargs["require_label"] = True
        return kwargs, "empty.nii.gz", "empty"
    if problem == "non-integer label":
        kwargs["label_path"] = write_nifti(tmp_path / "frac.nii.gz", label * 0.5)
        return kwargs, "frac.nii.gz", "non-integer"
    if problem == "negative label":
        neg = label.astype(np.int16)
        neg[0, 0, 0] = -1
        kwargs["label_path"] = write_nifti(tmp_path / "neg.nii.gz", neg)
        return kwargs, "neg.nii.gz", "negative"
    raise AssertionError(problem)


NIFTI_PROBLEMS = [
    "missing image", "missing label", "truncated gz", "truncated nii", "garbage",
    "shape mismatch", "affine mismatch", "non-finite", "out of range", "empty label",
    "non-integer label", "negative label",
]  # fmt: skip


@pytest.mark.parametrize("problem", NIFTI_PROBLEMS)
def test_nifti_errors_name_the_file_and_the_problem(tmp_path, rng, problem):
    kwargs, name, message = _bad_nifti(tmp_path, rng, problem)
    with pytest.raises(DataError) as info:
        load_case(**kwargs)
    assert name in str(info.value) and message in str(info.value)


def test_nifti_small_affine_differences_are_tolerated(tmp_path, rng):
    image_path, _, _, label = nifti_pair(tmp_path, rng)
    nudged = AFFINE.copy()
    nudged[:3, 3] += 1e-5
    label_path = write_nifti(tmp_path / "nudged.nii.gz", label, nudged)
    assert load_case(image_path, label_path, require_label=True).label.any()


def test_decathlon_listing_and_unmatched_files(tmp_path, rng):
    root = tmp_path / "Task02_Heart"
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True)
    for name in ("la_003", "la_007"):
        image, label, _, _ = nifti_pair(tmp_path, rng, name=name)
        image.rename(root / "imagesTr" / f"{name}.nii.gz")
        label.rename(root / "labelsTr" / f"{name}.nii.gz")
    (root / "imagesTr" / "._la_003.nii.gz").write_bytes(b"macOS resource fork")
    write_nifti(root / "imagesTs" / "la_001.nii.gz", np.zeros((3, 3, 3), np.float32))

    train = decathlon_cases(root)
    assert [c.id for c in train] == ["la_003", "la_007"]
    assert train[0].label == root / "labelsTr" / "la_003.nii.gz"
    assert load_case(train[1].image, train[1].label).label.any()
    test = decathlon_cases(root, split="test")
    assert [(c.id, c.label) for c in test] == [("la_001", None)]

    write_nifti(root / "imagesTr" / "la_010.nii.gz", np.zeros((3, 3, 3), np.float32))
    write_nifti(root / "labelsTr" / "la_099.nii.gz", np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(DataError) as info:
        decathlon_cases(root)
    assert "la_010.nii.gz: image has no label" in str(info.value)
    assert "la_099.nii.gz: label has no image" in str(info.value)
    with pytest.raises(ValueError, match="split"):
        decathlon_cases(root, split="val")


def test_paired_cases(tmp_path, rng):
    image, label, _, _ = nifti_pair(tmp_path, rng)
    cases = paired_cases([(image, label), ("other", image, None)])
    assert [(c.id, c.label) for c in cases] == [("case_img", label), ("other", None)]
    with pytest.raises(DataError, match=r"missing\.nii\.gz: label file not found"):
        paired_cases([(image, tmp_path / "missing.nii.gz")])
    with pytest.raises(DataError, match="case id 'case_img' also used"):
        paired_cases([(image, label), (image, None)])


# --- LA h5 -----------------------------------------------------------------------------------


def write_la(root, case_id, image=None, label=None, **extra):
    folder = Path(root) / case_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mri_norm2.h5"
    with h5py.File(path, "w") as f:
        if image is not None:
            f.create_dataset("image", data=image)
        if label is not None:
            f.create_dataset("label", data=label)
        for key, value in extra.items():
            f.create_dataset(key, data=value)
    return path


def la_arrays(rng, shape=(10, 9, 8)):
    image = rng.normal(size=shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[3:7, 2:6, 2:5] = 1
    return image, label


def test_la_round_trip(tmp_path, rng):
    image, label = la_arrays(rng)
    write_la(tmp_path, "CASE01", image, label)
    case = load_la_case(tmp_path, "CASE01")
    assert case.id == "CASE01" and case.image.shape == (10, 9, 8, 1)
    np.testing.assert_array_equal(case.image[..., 0], image)
    np.testing.assert_array_equal(case.label, label)
    assert case.spacing == LA_SPACING == (0.625, 0.625, 0.625)
    np.testing.assert_array_equal(case.affine, np.diag([0.625, 0.625, 0.625, 1.0]))
    assert load_la_case(tmp_path, "CASE01", spacing=(1.0, 1.0, 2.0)).spacing == (1.0, 1.0, 2.0)
    assert load_la_case(tmp_path, "CASE01", with_label=False).label is None
    (tmp_path / "notes").mkdir()
    assert la_list_cases(tmp_path) == (["CASE01"], ["notes"])


LA_PROBLEMS = {
    "missing file": "not found",
    "not h5": "not an HDF5 file",
    "truncated": "corrupt",
    "missing image": "missing dataset 'image'",
    "missing label": "missing dataset 'label'",
    "2D image": "must be 3D",
    "4D label": "must be 3D",
    "shape mismatch": "differs from 'image'",
    "non-finite": "non-finite",
    "huge declared shape": "more than 2147483648 voxels",
}


@pytest.mark.parametrize("problem", sorted(LA_PROBLEMS))
def test_la_errors_name_the_file_and_the_problem(tmp_path, rng, problem):
    image, label = la_arrays(rng, shape=(40, 40, 40))
    path = tmp_path / "X" / "mri_norm2.h5"
    if problem == "not h5":
        path.parent.mkdir()
        path.write_text("image,label\n")
    elif problem == "truncated":
        truncate(write_la(tmp_path, "X", image, label), 0.6)
    elif problem == "missing image":
        write_la(tmp_path, "X", None, label)
    elif problem == "missing label":
        write_la(tmp_path, "X", image, None)
    elif problem == "2D image":
        write_la(tmp_path, "X", image[0], label)
    elif problem == "4D label":
        write_la(tmp_path, "X", image, label[..., None])
    elif problem == "shape mismatch":
        write_la(tmp_path, "X", image, label[1:])
    elif problem == "non-finite":
        image[0, 0, 0] = np.inf
        write_la(tmp_path, "X", image, label)
    elif problem == "huge declared shape":  # a few KB on disk, 256 GiB if read
        write_la(tmp_path, "X", None, label)
        with h5py.File(path, "a") as f:
            f.create_dataset("image", shape=(4096,) * 3, dtype=np.float32, chunks=(64,) * 3)
    with pytest.raises(DataError) as info:
        load_la_case(tmp_path, "X")
    assert str(path) in str(info.value) and LA_PROBLEMS[problem] in str(info.value)


def test_la_split_lists():
    train, test = la_split("train"), la_split("test")
    assert len(train) == len(set(train)) == 80
    assert len(test) == len(set(test)) == 20
    assert not set(train) & set(test)
    labelled, unlabelled = la_partition(16)
    assert labelled == train[:16] and unlabelled == train[16:]
    assert la_split("train", labelled=8) == train[:8] == la_partition(8)[0]
    with pytest.raises(ValueError):
        la_split("val")
    with pytest.raises(ValueError):
        la_partition(81)
    with pytest.raises(ValueError):
        la_split("test", labelled=2)


# --- PNG 2D ----------------------------------------------------------------------------------


def write_png(path, array, mode=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array), mode=mode).save(path)
    return path


def png_pair(root, name, rng, size=(12, 10)):
    image = rng.integers(0, 256, size=size).astype(np.uint8)
    label = np.zeros(size, np.uint8)
    label[3:8, 2:7] = 255
    return (
        write_png(root / "clean" / f"{name}_img.png", image),
        write_png(root / "clean" / f"{name}_seg.png", label),
        image,
        label,
    )


def test_png_round_trip_and_label_rule(tmp_path, rng):
    image_path, label_path, image, label = png_pair(tmp_path, "B7", rng)
    case = load_png_case(image_path, label_path, spacing=(2.0, 2.0))
    assert case.id == "B7" and case.image.shape == (12, 10, 1)
    np.testing.assert_array_equal(case.image[..., 0], image.astype(np.float32))
    np.testing.assert_array_equal(case.label, label // 255)
    assert case.spacing == (2.0, 2.0)
    np.testing.assert_array_equal(case.affine, np.diag([2.0, 2.0, 1.0]))
    # Not only 0/255: class indices as stored.
    classes = np.tile(np.arange(3, dtype=np.uint8), (12, 4))[:, :10]
    multi = write_png(tmp_path / "multi.png", classes)
    np.testing.assert_array_equal(load_png_case(image_path, multi).label, classes)


def test_png_list_cases_strip_the_csv_prefix(tmp_path, rng):
    for name in ("B1", "B2"):
        png_pair(tmp_path, name, rng)
    (tmp_path / "train.csv").write_text(
        "img\ndata/synth2d/clean/B1_img.png\ndata/synth2d/clean/B2_img.png\n"
    )
    (tmp_path / "train.seg.csv").write_text(
        "img\ndata/synth2d/clean/B1_seg.png\ndata/synth2d/clean/B2_seg.png\n"
    )
    cases = png_list_cases(tmp_path, "train.csv", "train.seg.csv")
    assert [c.id for c in cases] == ["B1", "B2"]
    assert cases[1].image == tmp_path / "clean" / "B2_img.png"
    assert cases[1].label == tmp_path / "clean" / "B2_seg.png"
    assert load_png_case(cases[0].image, cases[0].label).label.max() == 1
    assert png_list_cases(tmp_path, "train.csv")[0].label is None

    (tmp_path / "short.seg.csv").write_text("img\ndata/synth2d/clean/B1_seg.png\n")
    with pytest.raises(DataError, match=r"short\.seg\.csv: lists 1 labels but"):
        png_list_cases(tmp_path, "train.csv", "short.seg.csv")
    (tmp_path / "bad.csv").write_text("path\nclean/B1_img.png\n")
    with pytest.raises(DataError, match=r"bad\.csv: CSV list has no column 'img'"):
        png_list_cases(tmp_path, "bad.csv")
    with pytest.raises(DataError, match=r"none\.csv: CSV list not found"):
        png_list_cases(tmp_path, "none.csv")


PNG_PROBLEMS = {
    "missing": ("gone_img.png", "not found"),
    "truncated": ("B1_img.png", "truncated or corrupt"),
    "garbage": ("B1_img.png", "not a PNG"),
    "rgb image": ("B1_img.png", "colour mode 'RGB'"),
    "rgb label": ("B1_seg.png", "colour mode 'RGB'"),
    "size mismatch": ("B1_seg.png", "differs from image size"),
}


@pytest.mark.parametrize("problem", sorted(PNG_PROBLEMS))
def test_png_errors_name_the_file_and_the_problem(tmp_path, rng, problem):
    image_path, label_path, image, label = png_pair(tmp_path, "B1", rng)
    if problem == "missing":
        image_path = tmp_path / "gone_img.png"
    elif problem == "truncated":
        truncate(image_path)
    elif problem == "garbage":
        image_path.write_bytes(b"GIF89a not really")
    elif problem == "rgb image":
        write_png(image_path, np.stack([image] * 3, axis=-1))
    elif problem == "rgb label":
        write_png(label_path, np.stack([label] * 3, axis=-1))
    elif problem == "size mismatch":
        write_png(label_path, label[:, :-2])
    name, message = PNG_PROBLEMS[problem]
    with pytest.raises(DataError) as info:
        load_png_case(image_path, label_path)
    assert name in str(info.value) and message in str(info.value)


@pytest.mark.skipif(not LETTER_B.is_dir(), reason="letter-B data not present")
def test_real_letter_b_cases():
    cases = png_list_cases(LETTER_B, "val.csv", "val.seg.csv")
    assert len(cases) == 100
    for files in (
        cases[:3] + png_list_cases(LETTER_B, "test.corrupt.csv", "test.corrupt.seg.csv")[:2]
    ):
        case = load_png_case(files.image, files.label)
        assert case.image.shape == (128, 128, 1)
        assert set(np.unique(case.label).tolist()) == {0, 1}
        assert 0.0 <= case.image.min() < case.image.max() <= 255.0


# --- preprocessing ---------------------------------------------------------------------------


def test_zscore_and_ct_window(rng):
    image = rng.normal(5.0, 3.0, size=(8, 8, 8, 1)).astype(np.float32)
    out = zscore(image)
    assert out.dtype == np.float32
    np.testing.assert_allclose([out.mean(), out.std()], [0.0, 1.0], atol=1e-5)
    mask = np.zeros((8, 8, 8), bool)
    mask[:4] = True
    masked = zscore(image, mask)
    np.testing.assert_allclose([masked[:4].mean(), masked[:4].std()], [0.0, 1.0], atol=1e-5)
    np.testing.assert_array_equal(zscore(np.full((3, 3), 7.0)), np.zeros((3, 3)))
    two = np.concatenate([image, 10 * image + 4], axis=-1)
    per = zscore(two, per_channel=True)
    np.testing.assert_allclose(per.mean(axis=(0, 1, 2)), [0, 0], atol=1e-5)
    np.testing.assert_allclose(per.std(axis=(0, 1, 2)), [1, 1], atol=1e-5)
    with pytest.raises(ValueError, match="no voxel"):
        zscore(image, np.zeros((8, 8, 8), bool))

    ct = rng.uniform(-1000, 1000, size=(6, 6, 6)).astype(np.float32)
    clipped = np.clip(ct, -160, 300)
    expected = (clipped - clipped.mean()) / clipped.std()
    np.testing.assert_allclose(clip_and_zscore(ct), expected, rtol=1e-4, atol=1e-4)


def make_case(rng, shape, spacing, affine=None):
    image = rng.normal(size=(*shape, 2)).astype(np.float32)
    label = (rng.random(shape) > 0.5).astype(np.int32)
    return Case("c", image, label, spacing=spacing, affine=affine)


def test_resample_to_shape_matches_scipy_zoom(rng):
    case = make_case(rng, (16, 12, 8), (1.0, 1.5, 2.0))
    out = resample_to_shape(case, (8, 6, 16))
    zoom = (0.5, 0.5, 2.0)
    for ch in range(2):
        ref = ndimage.zoom(case.image[..., ch], zoom, order=1, grid_mode=True, mode="nearest")
        np.testing.assert_allclose(out.image[..., ch], ref, atol=1e-5)
    ref = ndimage.zoom(case.label, zoom, order=0, grid_mode=True, mode="nearest")
    np.testing.assert_array_equal(out.label, ref)
    assert out.spacing == (2.0, 3.0, 1.0)
    # 2D, as for letter B (128 -> 64 at spacing 2).
    flat = Case("b", rng.random((128, 128, 1)), np.zeros((128, 128), np.int32))
    small = resample_to_shape(flat, (64, 64))
    assert small.image.shape == (64, 64, 1) and small.spacing == (2.0, 2.0)
    # Edge-aligned: the first new pixel is centred between the first two old ones.
    np.testing.assert_array_equal(small.affine, [[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0, 0, 1]])


def test_resample_to_spacing_keeps_world_positions(rng):
    shape, spacing = (20, 15, 9), SPACING
    # An image linear in world coordinates: linear interpolation reproduces it exactly.
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = index @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    weights = np.array([0.3, -0.2, 0.5])
    image = (world @ weights)[..., None].astype(np.float32)
    case = Case("w", image, np.zeros(shape, np.int32), spacing=spacing, affine=AFFINE)

    out = resample_to_spacing(case, (1.0, 1.0, 1.0))
    assert out.spacing == (1.0, 1.0, 1.0)
    assert out.spatial_shape == (16, 18, 23)  # round(shape * old / new)
    np.testing.assert_allclose(np.linalg.norm(out.affine[:3, :3], axis=0), out.spacing)
    # Output voxel j sits at input index (j + 0.5) * ratio - 0.5, and both affines agree on it.
    ratio = np.array([1 / 0.8, 1 / 1.2, 1 / 2.5])
    j = np.stack(np.meshgrid(*[np.arange(n) for n in out.spatial_shape], indexing="ij"), -1)
    x_in = (j + 0.5) * ratio - 0.5
    world_out = j @ out.affine[:3, :3].T + out.affine[:3, 3]
    np.testing.assert_allclose(world_out, x_in @ AFFINE[:3, :3].T + AFFINE[:3, 3], atol=1e-9)
    inside = np.all((x_in >= 0) & (x_in <= np.array(shape) - 1), axis=-1)
    assert inside.mean() > 0.7
    np.testing.assert_allclose(
        out.image[..., 0][inside], (world_out @ weights)[inside], rtol=1e-4, atol=1e-3
    )

    # An integer factor is scipy.ndimage.zoom with edge-aligned grids.
    even = Case("e", image[:, :14, :8], spacing=spacing, affine=AFFINE)
    coarse = resample_to_spacing(even, (1.6, 2.4, 5.0), order=0)
    ref = ndimage.zoom(even.image[..., 0], 0.5, order=0, grid_mode=True, mode="nearest")
    assert coarse.spatial_shape == (10, 7, 4)
    np.testing.assert_array_equal(coarse.image[..., 0], ref)


def test_resample_onto_inverts_the_grid_map():
    """Back from the coarse grid onto the case's: a volume linear in world coordinates comes back
    exactly wherever the fine voxel lies between coarse voxel centres (linear interpolation of
    a linear function), and every fine voxel gets a value of the coarse one it lies in or next to.
    """
    shape, spacing = (20, 15, 9), SPACING
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = index @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    weights = np.array([0.3, -0.2, 0.5])
    case = Case(
        "w", (world @ weights)[..., None].astype(np.float32), spacing=spacing, affine=AFFINE
    )
    coarse_spacing = (1.9, 2.1, 3.3)
    coarse = resample_to_spacing(case, coarse_spacing)
    # The coarse volume, as a field of two channels, linear in the world position of each
    # coarse voxel (from the coarse case's own affine: an independent record of the geometry).
    j = np.stack(np.meshgrid(*[np.arange(n) for n in coarse.spatial_shape], indexing="ij"), -1)
    world_coarse = j @ coarse.affine[:3, :3].T + coarse.affine[:3, 3]
    field = np.stack([world_coarse @ weights, -(world_coarse @ weights)], axis=-1)

    back = resample_onto(field, coarse_spacing, case)
    assert back.shape == (*shape, 2) and back.dtype == np.float32
    # Fine voxel i in coarse index units, from the two affines.
    x = (world - coarse.affine[:3, 3]) @ np.linalg.inv(coarse.affine[:3, :3]).T
    inside = np.all((x >= 0) & (x <= np.array(coarse.spatial_shape) - 1), axis=-1)
    assert inside.mean() > 0.4
    expected = world @ weights
    np.testing.assert_allclose(back[..., 0][inside], expected[inside], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(back[..., 1][inside], -expected[inside], rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="channels-last"):
        resample_onto(field[..., 0], coarse_spacing, case)


def test_label_resampling_is_nearest_neighbour(rng):
    label = np.zeros((12, 12, 12), np.int32)
    label[2:9, 3:10, 4:8] = 3
    case = Case("l", np.zeros((12, 12, 12, 1)), label, spacing=(1.0, 1.0, 1.0))
    out = resample_to_spacing(case, (0.7, 1.3, 0.45))
    assert set(np.unique(out.label).tolist()) == {0, 3}
    back = resample_to_shape(case, (24, 24, 24))
    np.testing.assert_array_equal(back.label, label.repeat(2, 0).repeat(2, 1).repeat(2, 2))


def test_one_hot():
    label = np.array([[0, 2], [1, 2]])
    out = one_hot(label, 3)
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(-1), label)
    np.testing.assert_array_equal(out.sum(-1), 1.0)
    with pytest.raises(ValueError, match="outside range"):
        one_hot(label, 2)
