"""The data-source registry (jaxseg.data.sources) against expectations built independently:
tiny Decathlon, nnU-Net, LA h5 and PNG folders written here from known arrays, numpy's own
seeded permutation, the shipped LA lists and the synthetic generators called directly."""

import json
import pickle
import re

import h5py
import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxseg.data import (
    SOURCES,
    Split,
    la_partition,
    la_split,
    load_split,
    nifti_layout,
    save_nifti,
    synthetic,
)
from jaxseg.errors import DataError

SHAPE = (12, 10, 8)


def phantom(seed):
    """A cardiac-like phantom (labels 0..5) at SHAPE, spacing (1, 1, 2) mm."""
    return synthetic.cardiac_like(seed, shape=SHAPE, spacing=(1.0, 1.0, 2.0))


def write_msd(root, names, *, folder="Tr", seed=0):
    """Decathlon-layout cases ``images<folder>/NAME.nii.gz`` + labels; returns {name: case}."""
    (root / f"images{folder}").mkdir(parents=True, exist_ok=True)
    (root / f"labels{folder}").mkdir(parents=True, exist_ok=True)
    cases = {}
    for i, name in enumerate(names):
        case = phantom(seed + i)
        affine = np.diag([*case.spacing, 1.0])
        save_nifti(root / f"images{folder}" / f"{name}.nii.gz", case.image[..., 0], affine)
        save_nifti(root / f"labels{folder}" / f"{name}.nii.gz", case.label, affine)
        cases[name] = case
    return cases


def nifti_data(root, **overrides):
    return {"source": "nifti", "root": str(root), "labelled": 2, "unlabelled": -1, "val": 1,
            "test": 2, "split_seed": 3, **overrides}  # fmt: skip


TRAIN = [f"case_{i:02d}" for i in range(8)]


@pytest.fixture(scope="module")
def msd(tmp_path_factory):
    root = tmp_path_factory.mktemp("msd")
    cases = write_msd(root, TRAIN)
    (root / "dataset.json").write_text(json.dumps({"name": "tiny", "modality": {"0": "CT"}}))
    return root, cases


def test_msd_seeded_split_follows_numpy_permutation(msd):
    root, cases = msd
    split = load_split(nifti_data(root))
    order = [TRAIN[i] for i in np.random.default_rng(3).permutation(len(TRAIN))]
    assert nifti_layout(root) == "decathlon"
    assert split.ids() == {
        "labelled": order[2:4],
        "unlabelled": order[4:7],
        "val": order[7:],
        "test": {"test": order[:2]},
    }
    assert load_split(nifti_data(root)).ids() == split.ids()  # deterministic
    assert load_split(nifti_data(root, split_seed=4)).ids() != split.ids()
    parts = [*split.ids()["labelled"], *split.ids()["unlabelled"], *split.ids()["val"]]
    assert sorted(parts + split.ids()["test"]["test"]) == TRAIN  # disjoint, covers all ids
    case = split.labelled[1]
    expected = cases[order[3]]
    assert case.id == order[3] and case.spacing == (1.0, 1.0, 2.0)
    np.testing.assert_array_equal(case.image, expected.image)
    np.testing.assert_array_equal(case.label, expected.label)


def test_lazy_parts_slice_index_and_pickle(msd):
    root, _ = msd
    split = load_split(nifti_data(root, labelled=-1, val=0))
    labelled = split.labelled
    assert len(labelled) == 6 and len(split.unlabelled) == 0
    tail = labelled[2:4]
    assert [c.id for c in tail] == split.ids()["labelled"][2:4]
    assert labelled[-1].id == split.ids()["labelled"][-1]
    again = pickle.loads(pickle.dumps(split))
    assert isinstance(again, Split) and again.ids() == split.ids()
    np.testing.assert_array_equal(again.labelled[0].image, labelled[0].image)


def test_cache_reads_each_case_once(tmp_path):
    """With data.cache a case read once is kept: its file may even disappear afterwards;
    without, every access reads the file again."""
    write_msd(tmp_path, TRAIN[:4])
    cached = load_split(nifti_data(tmp_path, labelled=-1, val=0, test=0, cache=True))
    plain = load_split(nifti_data(tmp_path, labelled=-1, val=0, test=0))
    first, again = cached.labelled[0], cached.labelled[:2][0]
    assert again is first  # slices share the cache
    np.testing.assert_array_equal(plain.labelled[0].image, first.image)
    (tmp_path / "imagesTr" / f"{first.id}.nii.gz").unlink()
    assert cached.labelled[0] is first
    with pytest.raises(DataError, match=first.id):
        plain.labelled[0]


def test_msd_test_split_used_when_images_and_labels_exist(tmp_path):
    write_msd(tmp_path, ["a", "b", "c", "d"])
    write_msd(tmp_path, ["t2", "t1"], folder="Ts", seed=10)
    split = load_split(nifti_data(tmp_path, labelled=1, val=1, test=-1))
    assert split.ids()["test"] == {"test": ["t1", "t2"]}
    training = [*split.ids()["labelled"], *split.ids()["unlabelled"], *split.ids()["val"]]
    assert sorted(training) == ["a", "b", "c", "d"]
    assert load_split(nifti_data(tmp_path, test=1)).ids()["test"] == {"test": ["t1"]}
    # imagesTs without labelsTs is no test split: test cases are held out of imagesTr.
    for f in (tmp_path / "labelsTs").iterdir():
        f.unlink()
    split = load_split(nifti_data(tmp_path, labelled=1, val=1, test=1))
    held_out = split.ids()["test"]["test"]
    assert len(held_out) == 1 and held_out[0] in {"a", "b", "c", "d"}


def test_counts_larger_than_the_data_name_the_root(msd):
    root, _ = msd
    with pytest.raises(DataError, match=re.escape(str(root)) + r".*data.labelled = 7"):
        load_split(nifti_data(root, labelled=7))
    with pytest.raises(DataError, match=re.escape(str(root))):
        load_split(nifti_data(root, test=9))
    with pytest.raises(DataError, match=r"data.unlabelled = 5"):
        load_split(nifti_data(root, unlabelled=5))


def write_nnunet(root, names, *, values=(1.0, 2.0)):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, name in enumerate(names):
        case = phantom(i)
        affine = np.diag([*case.spacing, 1.0])
        for c, value in enumerate(values):
            image = np.full(SHAPE, value + 10 * i, np.float32)
            save_nifti(root / "imagesTr" / f"{name}_{c:04d}.nii.gz", image, affine)
        save_nifti(root / "labelsTr" / f"{name}.nii.gz", case.label, affine)


def test_nnunet_channels_are_stacked_in_order(tmp_path):
    write_nnunet(tmp_path, ["p1", "p2", "p3"])
    assert nifti_layout(tmp_path) == "nnunet"
    split = load_split(nifti_data(tmp_path, labelled=1, val=1, test=1))
    ids = split.ids()
    assert sorted([*ids["labelled"], *ids["unlabelled"], *ids["val"], *ids["test"]["test"]]) == [
        "p1", "p2", "p3",
    ]  # fmt: skip
    for part in (split.labelled, split.val, split.test_sets["test"]):
        case = part[0]
        i = int(case.id[1:]) - 1
        assert case.image.shape == (*SHAPE, 2)
        np.testing.assert_array_equal(case.image[..., 0], 1.0 + 10 * i)
        np.testing.assert_array_equal(case.image[..., 1], 2.0 + 10 * i)
        np.testing.assert_array_equal(case.label, phantom(i).label)


def test_nnunet_v2_dataset_json_and_bad_channels(tmp_path):
    write_nnunet(tmp_path, ["p1", "p2"], values=(1.0, 2.0, 3.0))
    meta = {"channel_names": {"0": "T1", "1": "T2", "2": "FLAIR"}, "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    split = load_split(nifti_data(tmp_path, labelled=2, val=0, test=0))
    p2 = {case.id: case for case in split.labelled}["p2"]
    assert p2.image.shape == (*SHAPE, 3)
    np.testing.assert_array_equal(p2.image[0, 0, 0], [11.0, 12.0, 13.0])
    bad = tmp_path / "imagesTr" / "p2_0001.nii.gz"
    save_nifti(bad, np.zeros((4, 4, 4), np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(DataError, match=r"p2_0001.nii.gz: channel shape"):
        list(load_split(nifti_data(tmp_path, labelled=2, val=0, test=0)).labelled)
    bad.unlink()
    with pytest.raises(DataError, match=r"p2_XXXX: channels 0000, 0002"):
        load_split(nifti_data(tmp_path, labelled=2, val=0, test=0))


def test_labels_one_vs_rest_spacing_and_clip_zscore(msd):
    root, cases = msd
    data = nifti_data(root, labelled=-1, val=0, test=0)
    raw = load_split(data).labelled[0]
    expected = cases[raw.id]
    for labels in ((2,), (1, 2)):
        case = load_split({**data, "labels": labels}).labelled[0]
        np.testing.assert_array_equal(case.label, np.isin(expected.label, labels))
    # (12, 10, 8) voxels of (1, 1, 2) mm resampled to 2 mm: (6, 5, 8) voxels.
    case = load_split({**data, "spacing": (2.0, 2.0, 2.0)}).labelled[0]
    assert case.spacing == (2.0, 2.0, 2.0) and case.image.shape == (6, 5, 8, 1)
    assert case.label.shape == (6, 5, 8)
    # output voxel 0 sits at input index (0 + 0.5) * 2 - 0.5 = 0.5 along axes 0 and 1: 0.5 mm.
    want_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    want_affine[:2, 3] = 0.5
    np.testing.assert_allclose(case.affine, want_affine)
    case = load_split({**data, "intensity": "clip_zscore", "clip": (-100, 200)}).labelled[0]
    clipped = np.clip(expected.image.astype(np.float64), -100, 200)
    assert clipped.min() == -100 and clipped.max() == 200  # the window cuts both ends
    want = (clipped - clipped.mean()) / clipped.std()
    np.testing.assert_allclose(case.image, want, atol=1e-5)
    case = load_split({**data, "intensity": "zscore"}).labelled[0]
    image = expected.image.astype(np.float64)
    np.testing.assert_allclose(case.image, (image - image.mean()) / image.std(), atol=1e-5)
    with pytest.raises(ValueError, match=r"data.clip"):
        load_split({**data, "intensity": "clip_zscore"})


def test_ids_round_trip_and_unknown_ids(msd, tmp_path):
    root, _ = msd
    split = load_split(nifti_data(root))
    assert load_split(nifti_data(root), ids=split.ids()).ids() == split.ids()
    chosen = {"labelled": ["case_05"], "unlabelled": [], "val": ["case_01"],
              "test": {"test": ["case_07", "case_00"]}}  # fmt: skip
    path = tmp_path / "split.json"
    path.write_text(json.dumps(chosen))
    fixed = load_split(nifti_data(root, split_file=str(path)))
    assert fixed.ids() == chosen and fixed.labelled[0].id == "case_05"
    with pytest.raises(DataError, match=re.escape(str(root)) + ".*'case_99'"):
        load_split(nifti_data(root), ids={**chosen, "val": ["case_99"]})
    with pytest.raises(DataError, match="'case_05' is in both labelled and val"):
        load_split(nifti_data(root), ids={**chosen, "val": ["case_05"]})
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"split.json: unreadable split file"):
        load_split(nifti_data(root, split_file=str(path)))


def write_la(root, case_id, value):
    (root / case_id).mkdir(parents=True)
    with h5py.File(root / case_id / "mri_norm2.h5", "w") as f:
        f.create_dataset("image", data=np.full((6, 5, 4), value, np.float32))
        f.create_dataset("label", data=np.ones((6, 5, 4), np.uint8))


def test_la_h5_matches_the_shipped_lists(tmp_path):
    labelled, rest = la_partition(4)
    wanted = {"labelled": labelled, "unlabelled": rest[:3], "val": rest[-2:],
              "test": {"test": la_split("test")[:3]}}  # fmt: skip
    ids = [*labelled, *rest[:3], *rest[-2:], *la_split("test")[:3]]
    for value, case_id in enumerate(ids):
        write_la(tmp_path, case_id, value)
    data = {"source": "la_h5", "root": str(tmp_path), "labelled": 4, "unlabelled": 3, "val": 2,
            "test": 3}  # fmt: skip
    split = load_split(data)
    assert split.ids() == wanted
    assert split.val[1].image[0, 0, 0, 0] == ids.index(rest[-1])
    assert split.test_sets["test"][0].spacing == (0.625, 0.625, 0.625)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: no case {rest[3]!r}")):
        load_split({**data, "unlabelled": 4})


def test_synthetic_letter_b_test_sets():
    data = {"source": "synthetic", "labelled": -1,
            "synthetic": {"family": "letter_b", "train": 2, "val": 1, "test": 2,
                          "shape": (32, 32), "spacing": (0.625,) * 3}}  # fmt: skip
    split = load_split(data)
    assert [c.id for c in split.labelled] == ["letter_b_0000", "letter_b_0001"]
    assert len(split.unlabelled) == 0 and [c.id for c in split.val] == ["letter_b_10000"]
    clean, corrupt = split.test_sets["clean"], split.test_sets["corrupt"]
    assert sorted(split.test_sets) == ["clean", "corrupt"]
    for i in range(2):
        reference = synthetic.letter_b(20_000 + i, shape=(32, 32))
        np.testing.assert_array_equal(clean[i].image, reference.image)
        np.testing.assert_array_equal(corrupt[i].label, reference.label)
        assert not np.array_equal(corrupt[i].image, reference.image)
    assert load_split(data, ids=split.ids()).ids() == split.ids()
    with pytest.raises(DataError, match="unknown id 'letter_b_0007'"):
        load_split(data, ids={**split.ids(), "labelled": ["letter_b_0007"]})


def test_an_older_config_dict_takes_the_defaults():
    # The data section of the configs before the sources registry: no family, split_seed, ...
    data = ml_collections.ConfigDict(
        {"source": "synthetic", "root": "", "labelled": 2, "unlabelled": -1, "val": 0,
         "synthetic": {"train": 4, "val": 1, "test": 2, "shape": (16, 16, 16),
                       "spacing": (2.2, 2.2, 2.2)}}
    )  # fmt: skip
    split = load_split(data)
    assert split.ids() == {
        "labelled": ["la_synth_0000", "la_synth_0001"],
        "unlabelled": ["la_synth_0002", "la_synth_0003"],
        "val": ["la_synth_10000"],
        "test": {"test": ["la_synth_20000", "la_synth_20001"]},
    }
    reference = synthetic.la_like(20_001, shape=(16, 16, 16), spacing=(2.2, 2.2, 2.2))
    np.testing.assert_array_equal(split.test_sets["test"][1].image, reference.image)
    data.synthetic.family = ""  # the base config's neutral default
    assert load_split(data).ids() == split.ids()


def test_synthetic_3d_family_parts():
    data = {"source": "synthetic", "labelled": 1, "unlabelled": 1,
            "synthetic": {"family": "cardiac_like", "train": 3, "val": 1, "test": 1,
                          "shape": (16, 16, 16), "spacing": (4.0, 4.0, 4.0)}}  # fmt: skip
    split = load_split(data)
    assert split.ids() == {
        "labelled": ["cardiac_synth_0000"],
        "unlabelled": ["cardiac_synth_0001"],
        "val": ["cardiac_synth_10000"],
        "test": {"test": ["cardiac_synth_20000"]},
    }
    assert split.test_sets["test"][0].spacing == (4.0, 4.0, 4.0)


def write_pngs(root, group, names, with_csv):
    (root / group).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        image = np.full((8, 6), 10 * k, np.uint8)
        label = np.zeros((8, 6), np.uint8)
        label[: k + 1] = 255
        Image.fromarray(image).save(root / group / f"{name}_img.png")
        Image.fromarray(label).save(root / group / f"{name}_seg.png")
    images, labels = with_csv
    for csv, kind in ((images, "img"), (labels, "seg")):
        rows = [f"data/synth2d/{group}/{name}_{kind}.png" for name in names]
        (root / csv).write_text("img\n" + "\n".join(rows) + "\n")


def test_png2d_letter_b_layout(tmp_path):
    write_pngs(tmp_path, "clean", ["B1", "B2", "B3"], ("train.csv", "train.seg.csv"))
    write_pngs(tmp_path, "clean", ["B101", "B102"], ("val.csv", "val.seg.csv"))
    write_pngs(tmp_path, "corrupt", ["B101", "B102"], ("test.corrupt.csv", "test.corrupt.seg.csv"))
    data = {"source": "png2d", "root": str(tmp_path), "labelled": 2, "unlabelled": -1, "val": 0,
            "test": 1}  # fmt: skip
    split = load_split(data)
    assert split.ids() == {"labelled": ["B1", "B2"], "unlabelled": ["B3"], "val": [],
                           "test": {"clean": ["B101"], "corrupt": ["B101"]}}  # fmt: skip
    case = split.labelled[1]
    assert case.image.shape == (8, 6, 1) and case.image.max() == 10
    np.testing.assert_array_equal(case.label.sum(axis=1), [6, 6, 0, 0, 0, 0, 0, 0])
    assert "corrupt/B101_img.png" in split.test_sets["corrupt"][0].source
    with pytest.raises(
        DataError, match=r"val.csv: data.test = 3 test cases asked for, 2 are listed"
    ):
        load_split({**data, "test": 3})


def test_registry_and_config_errors():
    assert sorted(SOURCES) == ["la_h5", "nifti", "png2d", "synthetic"]
    with pytest.raises(ValueError, match=r"data.source must be one of"):
        load_split({"source": "dicom"})
    with pytest.raises(ValueError, match=r"data.root must name"):
        load_split({"source": "nifti", "root": ""})
    with pytest.raises(DataError, match="nowhere: NIfTI data folder not found"):
        load_split({"source": "nifti", "root": "nowhere"})


def test_nifti_k_fold_splits_partition_the_cases(msd):
    """``data.folds=3``: the three test sets are disjoint, cover every case once, differ in size
    by at most one, and each fold trains on the other cases only."""
    root, _ = msd
    seen = []
    for fold in range(3):
        ids = load_split(nifti_data(root, folds=3, fold=fold, labelled=-1, val=0)).ids()
        test = ids["test"]["test"]
        training = ids["labelled"] + ids["unlabelled"] + ids["val"]
        assert not set(test) & set(training) and len(test) + len(training) == len(TRAIN)
        assert len(test) in (2, 3)
        seen += test
    assert sorted(seen) == TRAIN
    with pytest.raises(ValueError, match=r"data\.folds"):
        load_split(nifti_data(root, folds=3, fold=3))
