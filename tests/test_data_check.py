"""``jaxseg data check``: every case is loaded and every problem is reported, none dropped."""

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from jaxseg.data.check import check_dataset, detect_layout, main
from jaxseg.data.la_h5 import la_split


def write_nifti(path, data, affine=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([0.7, 0.7, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(data), affine), path)


def volume(rng, shape=(8, 7, 6)):
    image = rng.normal(size=shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[2:5, 2:5, 2:4] = 1
    return image, label


def decathlon(root, rng, names=("good_1", "good_2")):
    for name in names:
        image, label = volume(rng)
        write_nifti(root / "imagesTr" / f"{name}.nii.gz", image)
        write_nifti(root / "labelsTr" / f"{name}.nii.gz", label)
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "organ"}}))
    return root


def test_a_json_report_that_cannot_be_written_is_refused_clearly(tmp_path, rng, capsys):
    """--json naming a folder is refused before the check (status 2, nothing written); one
    whose folder cannot be made (a file is in the way) is reported by name, not a traceback."""
    root = decathlon(tmp_path / "Task", rng)
    before = sorted(p.name for p in root.rglob("*"))
    assert main(root, json_path=root) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "is a folder; give a file name" in captured.err
    assert sorted(p.name for p in root.rglob("*")) == before
    (tmp_path / "blocker").write_text("")
    assert main(root, json_path=tmp_path / "blocker" / "report.json") == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "blocker" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Task", "blocker"]


def test_symbolic_links_count_as_their_files_and_a_broken_one_is_named(tmp_path, rng, capsys):
    root = decathlon(tmp_path / "Task", rng)
    (root / "imagesTr" / "linked.nii.gz").symlink_to(root / "imagesTr" / "good_1.nii.gz")
    (root / "labelsTr" / "linked.nii.gz").symlink_to(root / "labelsTr" / "good_1.nii.gz")
    assert main(root) == 0
    assert "3 cases checked" in capsys.readouterr().out
    (root / "imagesTr" / "gone.nii.gz").symlink_to(tmp_path / "nowhere.nii.gz")
    assert main(root) == 2
    err = capsys.readouterr().err
    assert "gone.nii.gz: a broken symbolic link" in err and "nowhere.nii.gz" in err


def problems_by_id(report):
    return {c.id: c.problems for c in report.cases if c.problems}


def test_clean_decathlon_folder_passes(tmp_path, rng, capsys):
    root = decathlon(tmp_path / "Task", rng)
    json_path = tmp_path / "report.json"
    assert main(root, json_path=json_path) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[-1].startswith("2 cases checked (decathlon") and "0 with problems" in lines[-1]
    # An aligned table: the last column starts at the same place on every row.
    column = lines[0].index("problems")
    assert [line[column:] for line in lines[1:3]] == ["ok", "ok"]
    assert "8x7x6x1" in lines[1] and "0.7x0.7x2" in lines[1] and "0,1" in lines[1]
    saved = json.loads(json_path.read_text())
    assert saved["summary"] == {
        "cases": 2, "cases_with_problems": 0, "dataset_problems": 0, "ok": True,
    }  # fmt: skip
    assert saved["num_classes"] == 2 and saved["cases"][0]["shape"] == [8, 7, 6, 1]


@pytest.mark.parametrize("problem", ["empty label", "corrupt", "out of range", "no label"])
def test_decathlon_reports_exactly_the_bad_case(tmp_path, rng, capsys, problem):
    root = decathlon(tmp_path / "Task", rng)
    image, label = volume(rng)
    bad_label = root / "labelsTr" / "bad.nii.gz"
    write_nifti(root / "imagesTr" / "bad.nii.gz", image)
    if problem == "empty label":
        write_nifti(bad_label, np.zeros_like(label))
        expected = "empty label"
    elif problem == "corrupt":
        write_nifti(bad_label, label)
        bad_label.write_bytes(bad_label.read_bytes()[:60])
        expected = "bad.nii.gz: not a NIfTI file, or its header is truncated or corrupt"
    elif problem == "out of range":
        write_nifti(bad_label, label * 3)
        expected = "label values [3] outside range(2)"
    else:
        expected = "bad.nii.gz: label file not found"
    json_path = tmp_path / "report.json"
    assert main(root, json_path) == 1
    out = capsys.readouterr().out
    report = check_dataset(root)
    bad = problems_by_id(report)
    assert list(bad) == ["bad"] and expected in bad["bad"][0]
    assert expected in out and "1 with problems" in out.splitlines()[-1]
    saved = json.loads(json_path.read_text())
    assert [c["id"] for c in saved["cases"] if c["problems"]] == ["bad"]


def test_decathlon_label_without_image_and_test_split(tmp_path, rng):
    root = decathlon(tmp_path / "Task", rng, names=("a",))
    write_nifti(root / "imagesTs" / "t1.nii.gz", volume(rng)[0])
    report = check_dataset(root)
    assert report.ok and [(c.set, c.id) for c in report.cases] == [
        ("imagesTr", "a"), ("imagesTs", "t1"),
    ]  # fmt: skip
    assert report.cases[1].label_values is None
    write_nifti(root / "labelsTr" / "lonely.nii.gz", volume(rng)[1])
    report = check_dataset(root)
    assert not report.bad_cases and len(report.problems) == 1 and not report.ok
    assert "lonely.nii.gz: label has no image" in report.problems[0]
    assert main(root) == 1


def write_la(root, case_id, image, label):
    (root / case_id).mkdir(parents=True)
    with h5py.File(root / case_id / "mri_norm2.h5", "w") as f:
        f.create_dataset("image", data=image)
        f.create_dataset("label", data=label)


def test_la_folder_reports_exactly_the_bad_case(tmp_path, rng, capsys):
    root = tmp_path / "LA"
    train_id, test_id = la_split("train")[0], la_split("test")[0]
    write_la(root, train_id, *volume(rng))
    write_la(root, test_id, *volume(rng))
    assert detect_layout(root) == "la_h5"
    assert main(root) == 0
    assert "0.625x0.625x0.625" in capsys.readouterr().out
    (root / test_id / "mri_norm2.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    (root / "extra").mkdir()  # a folder without the h5 file is reported, not skipped
    report = check_dataset(root)
    assert {(c.set, c.id) for c in report.cases} == {
        ("train", train_id), ("test", test_id), ("-", "extra"),
    }  # fmt: skip
    bad = problems_by_id(report)
    assert sorted(bad) == sorted([test_id, "extra"])
    assert "not an HDF5 file or corrupt" in bad[test_id][0]
    assert "LA h5 file not found" in bad["extra"][0]
    assert main(root) == 1


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def letter_b(root, rng, names=("B1", "B2")):
    rows_img, rows_seg = ["img"], ["img"]
    for name in names:
        label = np.zeros((16, 16), np.uint8)
        label[4:12, 5:11] = 255
        write_png(root / "clean" / f"{name}_img.png", rng.integers(0, 256, (16, 16), np.uint8))
        write_png(root / "clean" / f"{name}_seg.png", label)
        rows_img.append(f"data/synth2d/clean/{name}_img.png")
        rows_seg.append(f"data/synth2d/clean/{name}_seg.png")
    (root / "train.csv").write_text("\n".join(rows_img) + "\n")
    (root / "train.seg.csv").write_text("\n".join(rows_seg) + "\n")
    return root


def test_png_folder_reports_exactly_the_bad_case(tmp_path, rng):
    root = letter_b(tmp_path / "synth2d", rng)
    report = check_dataset(root)
    assert report.layout == "png2d" and report.ok
    assert [c.label_values for c in report.cases] == [[0, 1], [0, 1]]
    rgb = np.zeros((16, 16, 3), np.uint8)
    write_png(root / "clean" / "B2_img.png", rgb)
    report = check_dataset(root)
    bad = problems_by_id(report)
    assert list(bad) == ["B2"] and "B2_img.png: image has colour mode 'RGB'" in bad["B2"][0]
    assert main(root) == 1


def test_png_folder_without_csv_lists(tmp_path, rng):
    root = letter_b(tmp_path / "synth2d", rng)
    clean = root / "clean"
    assert check_dataset(clean).ok
    (clean / "B2_seg.png").unlink()
    bad = problems_by_id(check_dataset(clean))
    assert list(bad) == ["B2"] and "B2_seg.png: label file not found" in bad["B2"][0]


def test_unknown_or_missing_folder_exits_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("nothing here")
    assert main(tmp_path) == 2
    assert "unknown data set layout" in capsys.readouterr().err
    assert main(tmp_path / "missing") == 2
    assert "not a directory" in capsys.readouterr().err
