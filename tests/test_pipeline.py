"""grain pipelines: crops, rot/flip and affine augmentation, two-stream batches, resumption, shards.

The volumes encode their voxel coordinates: ``image = 1 + flat index`` (0 is kept for padding)
and ``label = code(image)``, so after any transform ``label == code(image)`` shows that image
and label moved together, and the image values say where every voxel came from.
"""

import itertools
import json

import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.data.case import Case
from jaxseg.data.pipeline import (
    LoaderOptions,
    case_to_record,
    dataset,
    loader_options,
    semi_supervised_dataset,
)
from jaxseg.data.transforms import (
    RandomAffine,
    RandomCrop,
    RandomRotFlip,
    default_transforms,
    normalize,
)
from jaxseg.geometry import affine_disp, affine_matrix, warp

PATCH = (8, 8, 8)
IN_PROCESS = LoaderOptions(num_workers=0, read_threads=0)


def code(image):
    """Label of a coordinate-encoding image: 0 on padding, 1..7 elsewhere."""
    values = np.asarray(image)
    return np.where(values > 0, values.astype(np.int64) % 7 + 1, 0).astype(np.int32)


def coordinate_case(case_id, shape, *, offset=0, labelled=True):
    """A case whose image is ``1 + offset + flat index`` and whose label is ``code(image)``."""
    image = (1 + offset + np.arange(np.prod(shape))).reshape(*shape, 1).astype(np.float32)
    return Case(id=case_id, image=image, label=code(image[..., 0]) if labelled else None)


def decode(values, shape, offset=0):
    """Voxel coordinates ``(..., N)`` of the values of ``coordinate_case(.., shape, offset)``."""
    return np.stack(np.unravel_index(values.astype(np.int64) - 1 - offset, shape), axis=-1)


@pytest.fixture(scope="module")
def cases():
    """4 labelled and 6 unlabelled cases; some smaller than the patch; values never overlap."""
    shapes = [(12, 12, 12), (10, 12, 9), (6, 12, 12), (12, 7, 12)]
    labelled = [
        coordinate_case(f"L{i}", shape, offset=10_000 * i) for i, shape in enumerate(shapes)
    ]
    # The unlabelled cases carry labels that must never reach a batch.
    unlabelled = [
        coordinate_case(f"U{i}", (12, 12, 12), offset=10_000 * (i + 10)) for i in range(6)
    ]
    return labelled, unlabelled


def take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def assert_batches_equal(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


# ---------------------------------------------------------------------------------------------
# Per-record transforms


def test_case_to_record_keeps_arrays_and_id():
    case = coordinate_case("a", (4, 5, 6))
    record = case_to_record(case)
    assert record["id"] == "a"
    assert record["image"] is case.image and record["label"] is case.label
    assert case_to_record(coordinate_case("b", (4, 5, 6), labelled=False))["label"] is None


@pytest.mark.parametrize("shape", [(12, 12, 12), (6, 12, 5), (8, 8, 8), (3, 9, 8)])
def test_random_crop_shape_padding_and_alignment(shape):
    record = case_to_record(coordinate_case("c", shape))
    crop = RandomCrop(PATCH)
    starts = set()
    for seed in range(60):
        out = crop.random_map(record, np.random.default_rng(seed))
        image, label = out["image"][..., 0], out["label"]
        assert out["image"].shape == (*PATCH, 1) and label.shape == PATCH
        assert out["image"].dtype == np.float32 and label.dtype == np.int32
        np.testing.assert_array_equal(label, code(image))
        inside = image > 0
        # Padding is 0 exactly where the volume is smaller than the patch: the original voxels
        # fill a box of min(S, P) voxels.
        assert inside.sum() == np.prod(np.minimum(shape, PATCH))
        # The crop is a translated window: decoded coordinate minus position is constant.
        shift = decode(image[inside], shape) - np.argwhere(inside)
        assert (shift == shift[0]).all()
        # Along padded axes every voxel of the volume is present, centred (odd voxel after).
        for axis, (s, p) in enumerate(zip(shape, PATCH)):
            if s < p:
                assert np.argwhere(inside)[:, axis].min() == (p - s) // 2
        starts.add(tuple(shift[0]))
    # Uniform offsets: along each axis every start, including the last one, is drawn; along a
    # padded axis the shift is minus the padding before the volume.
    for axis, (s, p) in enumerate(zip(shape, PATCH)):
        expected = set(range(s - p + 1)) if s >= p else {-((p - s) // 2)}
        assert {int(start[axis]) for start in starts} == expected


def test_random_crop_unlabelled_and_dimension_check():
    record = case_to_record(coordinate_case("u", (12, 12, 12), labelled=False))
    out = RandomCrop(PATCH).random_map(record, np.random.default_rng(0))
    assert out["image"].shape == (*PATCH, 1) and out["label"] is None
    with pytest.raises(ValueError, match="len"):
        RandomCrop((8, 8)).random_map(record, np.random.default_rng(0))
    with pytest.raises(ValueError, match="foreground_prob"):
        RandomCrop(PATCH, foreground_prob=1.5)


def test_random_crop_foreground_centred():
    label = np.zeros((24, 24, 24), np.int32)
    label[20:22, 1:3, 20:23] = 1
    record = {"image": np.zeros((24, 24, 24, 1), np.float32), "label": label, "id": "f"}
    hits = [
        RandomCrop(PATCH, foreground_prob=p)
        .random_map(record, np.random.default_rng(s))["label"]
        .any()
        for p in (1.0, 0.0)
        for s in range(40)
    ]
    assert all(hits[:40])  # always contains foreground when centred on it
    assert not all(hits[40:])  # the uniform crop misses the small object sometimes


def test_random_rot_flip_same_bijection_for_image_and_label():
    shape = (12, 10, 8)
    record = case_to_record(coordinate_case("r", shape))
    image = record["image"]
    candidates = [
        np.flip(np.rot90(image, k, axes=(0, 1)), axis=axis)
        for k, axis in itertools.product(range(4), range(2))
    ]
    seen = set()
    for seed in range(80):
        out = RandomRotFlip().random_map(record, np.random.default_rng(seed))
        np.testing.assert_array_equal(out["label"], code(out["image"][..., 0]))
        # A permutation of the voxels: the values are preserved as a multiset.
        np.testing.assert_array_equal(np.sort(out["image"], axis=None), np.sort(image, axis=None))
        matches = [
            i
            for i, c in enumerate(candidates)
            if c.shape == out["image"].shape and np.array_equal(c, out["image"])
        ]
        assert len(matches) >= 1
        seen.add(matches[0])
        assert out["image"].shape[2] == shape[2]  # the axial plane is axes 0 and 1
    # The 8 (k, axis) pairs give 4 distinct transforms (rot90 k then flip = rot90 k+2 flip other).
    distinct = {i for i in range(8) if not any(
        np.array_equal(candidates[i], candidates[j]) for j in range(i)
        if candidates[i].shape == candidates[j].shape)}  # fmt: skip
    assert seen == distinct and len(distinct) == 4
    unlabelled = {**record, "label": None}
    assert RandomRotFlip().random_map(unlabelled, np.random.default_rng(0))["label"] is None


def test_random_affine_matches_geometry_warp():
    """scipy resampling = ``warp(x, affine_disp(matrix))``; the matrix = ``affine_matrix``."""
    shape = (12, 11, 10)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(*shape, 2)).astype(np.float32)
    label = rng.choice(np.array([0, 3, 7], np.int32), size=shape)
    record = {"image": image, "label": label, "id": "a"}
    transform = RandomAffine(translation=2.0, rotation=0.3, scaling=0.15)
    out = transform.random_map(record, np.random.default_rng(3))
    matrix = transform.sample_matrix(np.random.default_rng(3), 3)

    # Same draws: translation, angles, log scale as in ``affine_matrix``.
    draw = np.random.default_rng(3)
    t = draw.uniform(-2.0, 2.0, 3)
    angles = draw.uniform(-0.3, 0.3, 3)
    scale = draw.uniform(0.85, 1.15, 3)
    expected = affine_matrix(jnp.asarray(t), jnp.asarray(angles), jnp.log(jnp.asarray(scale)))
    np.testing.assert_allclose(matrix, np.asarray(expected), atol=1e-6)

    disp = affine_disp(jnp.asarray(matrix, jnp.float32), shape)
    np.testing.assert_allclose(out["image"], np.asarray(warp(image, disp, order=1)), atol=2e-5)
    nearest = np.asarray(warp(label, disp, order=0))
    assert (out["label"] != nearest).sum() <= 2  # ties at .5 may round either way
    assert out["image"].dtype == np.float32 and out["label"].dtype == np.int32
    assert set(np.unique(out["label"])) <= {0, 3, 7}
    assert not np.array_equal(out["label"], label)


@pytest.mark.parametrize("mode", ["border", "zeros"])
def test_random_affine_keeps_label_values_and_alignment(mode):
    shape = (12, 12, 12)
    label = np.zeros(shape, np.int32)
    label[3:9, 2:10, 4:11] = 2
    label[5:7, 5:7, 5:7] = 5
    # The image is the label as a float: where the interpolated image is exactly a label value
    # (inside flat regions) the nearest-neighbour label must agree with it.
    record = {"image": label[..., None].astype(np.float32), "label": label, "id": "a"}
    transform = RandomAffine(translation=(2, 1, 0), rotation=0.4, scaling=0.2, mode=mode)
    for seed in range(10):
        out = transform.random_map(record, np.random.default_rng(seed))
        assert set(np.unique(out["label"])) <= {0, 2, 5}
        flat = np.isin(out["image"][..., 0], [0.0, 2.0, 5.0])
        agree = out["label"][flat] == out["image"][..., 0][flat]
        assert agree.mean() > 0.97
    untouched = RandomAffine(translation=3, prob=0.0).random_map(record, np.random.default_rng(0))
    assert untouched is record
    unlabelled = RandomAffine(translation=3).random_map(
        {**record, "label": None}, np.random.default_rng(0)
    )
    assert unlabelled["label"] is None and unlabelled["image"].shape == (*shape, 1)
    with pytest.raises(ValueError, match="scaling"):
        RandomAffine(scaling=1.0)


def test_normalize_per_channel_and_constant_channel():
    rng = np.random.default_rng(0)
    image = np.concatenate(
        [rng.normal(5.0, 3.0, (10, 10, 10, 1)), np.full((10, 10, 10, 1), 7.0)], axis=-1
    ).astype(np.float32)
    out = normalize({"image": image, "label": None, "id": "n"})
    assert out["image"].dtype == np.float32
    np.testing.assert_allclose(out["image"][..., 0].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(out["image"][..., 0].std(), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out["image"][..., 1], 0.0)


# ---------------------------------------------------------------------------------------------
# Batches


def check_items(batch, cases_by_id):
    """Each item is a crop of the case named by ``id``, with an aligned label when labelled."""
    for i, case_id in enumerate(batch["id"]):
        case = cases_by_id[str(case_id)]
        image = batch["image"][i, ..., 0]
        assert np.isin(image[image > 0], case.image).all()
        if batch["labelled"][i]:
            np.testing.assert_array_equal(batch["label"][i], code(image))
        else:
            assert not batch["label"][i].any()


def test_two_stream_batch_composition(cases):
    labelled, unlabelled = cases
    by_id = {c.id: c for c in labelled + unlabelled}
    ds = semi_supervised_dataset(labelled, unlabelled, patch=PATCH, seed=0, options=IN_PROCESS)
    batches = take(ds, 12)
    for batch in batches:
        assert batch["image"].shape == (4, *PATCH, 1) and batch["image"].dtype == np.float32
        assert batch["label"].shape == (4, *PATCH) and batch["label"].dtype == np.int32
        assert batch["labelled"].dtype == bool
        np.testing.assert_array_equal(batch["labelled"], [True, True, False, False])
        assert all(i.startswith("L") for i in batch["id"][:2])
        assert all(i.startswith("U") for i in batch["id"][2:])
        check_items(batch, by_id)
    # Each stream is a sequence of shuffled passes: 4 labelled per 2 batches, 6 unlabelled per 3.
    lab_ids = [i for b in batches for i in b["id"][:2]]
    unl_ids = [i for b in batches for i in b["id"][2:]]
    for start in range(0, len(lab_ids), 4):
        assert sorted(lab_ids[start : start + 4]) == [c.id for c in labelled]
    for start in range(0, len(unl_ids), 6):
        assert sorted(unl_ids[start : start + 6]) == [c.id for c in unlabelled]
    assert len({tuple(lab_ids[s : s + 4]) for s in range(0, 24, 4)}) > 1  # reshuffled per pass


def test_batch_sizes_and_supervised_only_fallback(cases):
    labelled, unlabelled = cases
    ds = semi_supervised_dataset(
        labelled,
        unlabelled,
        patch=PATCH,
        labelled_batch=1,
        unlabelled_batch=3,
        seed=0,
        options=IN_PROCESS,
    )
    (batch,) = take(ds, 1)
    np.testing.assert_array_equal(batch["labelled"], [True, False, False, False])
    ds = semi_supervised_dataset(labelled, [], patch=PATCH, seed=0, options=IN_PROCESS)
    for batch in take(ds, 3):
        assert batch["image"].shape == (2, *PATCH, 1) and batch["label"].shape == (2, *PATCH)
        assert batch["labelled"].all()
        assert all(i.startswith("L") for i in batch["id"])
        check_items(batch, {c.id: c for c in labelled})


def test_same_seed_same_batches_different_seed_different(cases):
    labelled, unlabelled = cases
    transforms = (RandomRotFlip(), RandomAffine(translation=1.0, rotation=0.2), RandomCrop(PATCH))

    def run(seed, threads):
        options = LoaderOptions(num_workers=0, read_threads=threads)
        return take(
            semi_supervised_dataset(
                labelled, unlabelled, patch=PATCH, seed=seed, transforms=transforms,
                options=options,
            ),
            6,
        )  # fmt: skip

    first = run(7, 0)
    assert_batches_equal(first, run(7, 0))
    assert_batches_equal(first, run(7, 2))  # threads change nothing
    other = run(8, 0)
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(first, other))


def test_restored_state_gives_the_same_batches(cases):
    labelled, unlabelled = cases

    def make():
        return semi_supervised_dataset(
            labelled, unlabelled, patch=PATCH, seed=3, options=LoaderOptions(read_threads=1)
        )

    it = iter(make())
    for _ in range(5):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # JSON-serialisable
    expected = [next(it) for _ in range(3)]
    resumed = iter(make())
    resumed.set_state(state)
    assert_batches_equal([next(resumed) for _ in range(3)], expected)
    # A fresh iterator without the state starts over, so the check above is not vacuous.
    assert not np.array_equal(next(iter(make()))["image"], expected[0]["image"])


def test_processes_assemble_the_one_process_batches():
    """Each of P processes yields its contiguous slice of every global batch: put side by side
    in process order they are, item for item (augmentations included), the batches of one
    process; and each process reads only its own items."""
    labelled = [coordinate_case(f"L{i}", (10, 10, 10), offset=1000 * i) for i in range(5)]
    unlabelled = [coordinate_case(f"U{i}", (10, 10, 10), offset=1000 * (i + 9)) for i in range(7)]

    def batches(process_index, process_count, **kwargs):
        ds = semi_supervised_dataset(
            labelled, unlabelled, patch=PATCH, seed=0, num_epochs=4, labelled_batch=2,
            unlabelled_batch=2, process_index=process_index, process_count=process_count,
            options=IN_PROCESS, **kwargs,
        )  # fmt: skip
        return list(ds)

    one = batches(0, 1)
    assert len(one) == 4 * 5 // 2  # 4 passes over 5 labelled cases, 2 per batch
    for count in (2, 4):
        parts = [batches(p, count) for p in range(count)]
        assert all(len(part) == len(one) for part in parts)
        for step, whole in enumerate(one):
            for key in whole:
                joined = np.concatenate([part[step][key] for part in parts])
                np.testing.assert_array_equal(joined, whole[key], err_msg=f"{key} {step}")
        # With 2 processes, process 0 holds the labelled items and process 1 the unlabelled.
        if count == 2:
            assert all(b["labelled"].all() for b in parts[0])
            assert not any(b["labelled"].any() for b in parts[1])

    with pytest.raises(ValueError, match="process_index"):
        batches(2, 2)
    with pytest.raises(ValueError, match="cannot be split evenly over 3 processes"):
        batches(0, 3)


def test_finite_epochs_count_labelled_passes(cases):
    labelled, unlabelled = cases
    batches = list(
        semi_supervised_dataset(
            labelled, unlabelled, patch=PATCH, seed=0, num_epochs=3, options=IN_PROCESS
        )
    )
    assert len(batches) == 6  # 3 passes of 4 labelled cases, 2 per batch
    lab_ids = [str(i) for b in batches for i in b["id"][:2]]
    assert {lab_ids.count(c.id) for c in labelled} == {3}


def test_semi_supervised_rejects_bad_input(cases):
    labelled, _ = cases
    # Cases may load lazily, so a missing label is found when the case is read.
    no_label = coordinate_case("x", (9, 9, 9), labelled=False)
    ds = semi_supervised_dataset(
        [no_label], [], patch=PATCH, labelled_batch=1, seed=0, options=IN_PROCESS
    )
    with pytest.raises(ValueError, match="no label"):
        next(iter(ds))
    # Without a crop, the records do not have the patch shape: the batch says so.
    ds = semi_supervised_dataset(
        labelled[:1], [], patch=PATCH, labelled_batch=1, seed=0, transforms=(), options=IN_PROCESS
    )
    with pytest.raises(ValueError, match="patch"):
        next(iter(ds))


def test_supervised_dataset_training_and_validation(cases):
    labelled, _ = cases
    mixed = [*labelled, coordinate_case("V", (12, 12, 12), offset=99_000, labelled=False)]
    by_id = {c.id: c for c in mixed}
    ds = dataset(mixed, patch=PATCH, batch_size=3, seed=0, options=IN_PROCESS)
    batches = take(ds, 5)
    for batch in batches:
        assert batch["image"].shape == (3, *PATCH, 1) and batch["label"].shape == (3, *PATCH)
        check_items(batch, by_id)
    flags = {str(i): bool(f) for b in batches for i, f in zip(b["id"], b["labelled"])}
    assert flags["V"] is False and all(flags[c.id] for c in labelled)
    assert_batches_equal(batches, take(dataset(mixed, patch=PATCH, batch_size=3, seed=0), 5))

    # Validation: whole volumes, in order, unchanged, one pass.
    val = list(
        dataset(
            labelled, patch=None, batch_size=1, seed=0, transforms=(), shuffle=False,
            num_epochs=1, drop_remainder=False, options=IN_PROCESS,
        )
    )  # fmt: skip
    assert [str(b["id"][0]) for b in val] == [c.id for c in labelled]
    for batch, case in zip(val, labelled):
        np.testing.assert_array_equal(batch["image"][0], case.image)
        np.testing.assert_array_equal(batch["label"][0], case.label)
    # Two processes share each global batch of 2 (in order: items 0 and 1, then 2 and 3); a
    # last batch they cannot share must be dropped.
    same = [coordinate_case(f"S{i}", (8, 8, 8), offset=100 * i) for i in range(4)]
    ordered = {"patch": None, "seed": 0, "transforms": (), "shuffle": False, "num_epochs": 1}
    ids = [
        [str(i) for b in dataset(same, batch_size=2, process_index=p, process_count=2, **ordered)
         for i in b["id"]]
        for p in range(2)
    ]  # fmt: skip
    assert ids == [["S0", "S2"], ["S1", "S3"]]
    with pytest.raises(ValueError, match="drop_remainder"):
        dataset(same[:3], batch_size=2, drop_remainder=False, process_count=2, **ordered)
    last = list(dataset(same[:3], batch_size=2, drop_remainder=False, **ordered))
    assert [len(b["id"]) for b in last] == [2, 1]


def test_loader_options_defaults():
    small = loader_options(cpu_count=2)
    assert small.num_workers == 0 and small.read_threads >= 1 and small.prefetch <= 4
    big = loader_options(cpu_count=32)
    assert big.num_workers > 0
    assert loader_options(cpu_count=32, num_workers=0).num_workers == 0
    assert small.read_options().prefetch_buffer_size == small.prefetch
    assert big.multiprocessing_options().num_workers == big.num_workers
    with pytest.raises(ValueError):
        LoaderOptions(num_workers=-1)
    assert [type(t) for t in default_transforms(PATCH)] == [RandomRotFlip, RandomCrop]
    assert default_transforms(None) == ()
