"""Synthetic phantoms: determinism, geometry, labels and the documented statistics.

Shapes are reduced (same field-of-view aspect as the defaults, so the same anatomy at a lower
resolution) to keep the file fast on two CPU cores.
"""

import numpy as np
import pytest
from scipy import ndimage

from jaxseg.data import synthetic
from jaxseg.data.case import Case

LA = {"shape": (56, 56, 40), "spacing": (1.25, 1.25, 1.25)}
CT = {"shape": (48, 48, 32), "spacing": (3.0, 3.0, 5.0)}
CARDIAC = {"shape": (40, 40, 40), "spacing": (1.6, 1.6, 1.6)}
LETTER = {"shape": (96, 96)}
SMALL = {"la_like": LA, "abdominal_ct_like": CT, "cardiac_like": CARDIAC, "letter_b": LETTER}
SEEDS = range(6)


@pytest.fixture(scope="module")
def cases():
    """Six cases of each generator at the reduced shapes, generated once for the module."""
    return {name: synthetic.dataset(name, len(SEEDS), **kw) for name, kw in SMALL.items()}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_arrays_other_seed_differs(name, cases):
    again = synthetic.GENERATORS[name](0, **SMALL[name])
    first, second = cases[name][0], cases[name][1]
    np.testing.assert_array_equal(again.image, first.image)
    np.testing.assert_array_equal(again.label, first.label)
    assert not np.array_equal(first.image, second.image)
    assert not np.array_equal(first.label, second.label)


@pytest.mark.parametrize(
    ("name", "prefix", "labels", "ndim"),
    [
        ("la_like", "la_synth", {0, 1}, 3),
        ("abdominal_ct_like", "pancreas_synth", {0, 1}, 3),
        ("cardiac_like", "cardiac_synth", set(range(6)), 3),
        ("letter_b", "letter_b", {0, 1}, 2),
    ],
)
def test_shapes_dtypes_spacing_ids_and_labels(name, prefix, labels, ndim, cases):
    shape = SMALL[name]["shape"]
    spacing = SMALL[name].get("spacing", (1.0,) * ndim)
    for seed, case in zip(SEEDS, cases[name]):
        assert isinstance(case, Case)
        assert case.id == f"{prefix}_{seed:04d}"
        assert case.image.shape == (*shape, 1) and case.image.dtype == np.float32
        assert case.label.shape == shape and case.label.dtype == np.int32
        assert case.spacing == spacing
        np.testing.assert_allclose(np.diag(case.affine), [*spacing, 1.0])
        assert set(np.unique(case.label)) == labels, case.id


def test_default_geometry():
    case = synthetic.la_like(3)
    assert case.id == "la_synth_0003"
    assert case.image.shape == (112, 112, 80, 1)
    assert case.spacing == (0.625, 0.625, 0.625)


def test_dataset_uses_consecutive_seeds_and_validates():
    cases = synthetic.dataset("letter_b", 2, seed=7, shape=(32, 32), corrupt=True)
    assert [c.id for c in cases] == ["letter_b_corrupt_0007", "letter_b_corrupt_0008"]
    np.testing.assert_array_equal(
        cases[1].image, synthetic.letter_b(8, shape=(32, 32), corrupt=True).image
    )
    with pytest.raises(ValueError, match="unknown synthetic generator"):
        synthetic.dataset("brain", 1)
    with pytest.raises(ValueError, match="seed"):
        synthetic.letter_b(-1)
    with pytest.raises(ValueError, match="shape"):
        synthetic.la_like(0, shape=(64, 64))


def test_la_like_statistics(cases):
    for case in cases["la_like"]:
        fraction = case.label.mean()
        assert 0.05 <= fraction <= 0.15, (case.id, fraction)
        image, label = case.image[..., 0], case.label.astype(bool)
        # z-scored, and the blood pool is brighter than the rest on average.
        assert abs(image.mean()) < 1e-3 and abs(image.std() - 1) < 1e-3
        assert image[label].mean() > image[~label].mean() + 0.5, case.id


def test_la_like_distractors_are_bright_and_unlabelled(cases):
    def bright_outside(case):
        image, label = case.image[..., 0], case.label.astype(bool)
        outside = ~ndimage.binary_dilation(label, iterations=2)
        return (outside & (image > np.median(image[label]))).sum()

    plain = synthetic.la_like(0, distractors=False, **LA)
    np.testing.assert_array_equal(plain.label, cases["la_like"][0].label)
    assert bright_outside(cases["la_like"][0]) > 5 * bright_outside(plain)


def test_la_like_contrast_to_noise():
    raw = synthetic.la_like(0, normalize=False, **LA)
    clean = synthetic.la_like(0, normalize=False, noise_std=0.0, **LA)
    label = raw.label.astype(bool)
    noise = (raw.image - clean.image)[..., 0][label].std()
    contrast = raw.image[..., 0][label].mean() - raw.image[..., 0][~label].mean()
    assert 2 <= contrast / noise <= 4.5


def test_abdominal_ct_like_statistics(cases):
    centres, mean_hu = [], []
    for case in cases["abdominal_ct_like"]:
        image, label = case.image[..., 0], case.label.astype(bool)
        assert 0 < label.mean() < 0.02, case.id
        assert image.min() >= -1024 and image.min() < -900  # air outside the body
        assert 400 < image.max() < 1500  # bone, no more
        assert -200 < np.median(image[image > -500]) < 100  # soft tissue and fat
        # The organ's own HU, away from partial volume with the fat around it.
        mean_hu.append(image[ndimage.binary_erosion(label)].mean())
        centres.append(np.asarray(ndimage.center_of_mass(label)) * np.asarray(case.spacing))
    assert all(85 <= hu <= 130 for hu in mean_hu), mean_hu
    spread = np.std(centres, axis=0)  # mm
    assert spread[2] > 2 * max(spread[0], spread[1]), spread


def test_cardiac_like_structures(cases):
    for case in cases["cardiac_like"]:
        label = case.label
        counts = np.bincount(label.ravel(), minlength=6)
        assert (counts[1:] > 20).all(), (case.id, counts)
        lv = label == 1
        ring = ndimage.binary_dilation(lv, iterations=2)
        assert np.isin(label[ring], [1, 2]).mean() > 0.95, case.id
        image = case.image[..., 0]
        # Contrast-enhanced blood pools, darker myocardium, lungs.
        assert image[lv].mean() > image[label == 2].mean() + 150
        assert image[label == 3].mean() > image[label == 2].mean() + 50
        assert (image < -600).mean() > 0.05


def test_cardiac_like_global_affine_moves_the_heart(cases):
    centres = np.asarray([ndimage.center_of_mass(c.label == 1) for c in cases["cardiac_like"]])
    assert np.ptp(centres, axis=0).max() > 1.5  # voxels


def test_letter_b_statistics_and_corruption(cases):
    for seed, case in zip(SEEDS, cases["letter_b"]):
        fraction = case.label.mean()
        assert 0.07 <= fraction <= 0.2, (case.id, fraction)
        image = case.image[..., 0]
        assert image.min() >= 0 and image.max() <= 1
        assert image[case.label == 1].mean() > image[case.label == 0].mean() + 0.15
        dirty = synthetic.letter_b(seed, corrupt=True, **LETTER)
        assert dirty.id == f"letter_b_corrupt_{seed:04d}"
        np.testing.assert_array_equal(dirty.label, case.label)
        background = case.label == 0
        assert (dirty.image[..., 0][background] > 0.5).sum() > (image[background] > 0.5).sum()
        # Only clutter is added: the letter pixels are unchanged.
        np.testing.assert_array_equal(dirty.image[..., 0][~background], image[~background])


def test_letter_b_is_an_upright_b():
    """Without rotation and deformation: taller than wide, a full-height bar on the low side of
    axis 1, three horizontal strokes (top, waist, bottom) and two closed bowls."""
    label = synthetic.letter_b(0, max_rotation=0.0, deformation=0.0).label.astype(bool)
    rows, cols = np.nonzero(label)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert height > 1.3 * width
    columns = label.sum(axis=0)[cols.min() : cols.max() + 1]
    assert columns[: width // 3].max() > 0.95 * height  # the bar
    assert columns[-(width // 3) :].max() < 0.85 * height  # no bar on the other side

    def runs(line):
        return np.count_nonzero(np.diff(np.concatenate([[0], line.astype(int)])) == 1)

    assert runs(label[:, cols.min() + width // 2]) == 3  # top, waist, bottom
    for fraction in (0.25, 0.75):  # through each bowl: the bar and the ring
        assert runs(label[rows.min() + int(fraction * height)]) == 2
    holes = ndimage.label(~label)[1] - 1
    assert holes == 2


def test_sample_figures(tmp_path):
    paths = synthetic.save_sample_figures(tmp_path, n=1, options=SMALL)
    assert sorted(p.name for p in paths) == [
        "abdominal_ct_like.png", "cardiac_like.png", "la_like.png", "letter_b.png",
    ]  # fmt: skip
    assert all(p.stat().st_size > 5000 for p in paths)
