"""Metrics: equality with medpy.metric.binary, analytic values, empty-mask policies, errors."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxseg.geometry import integrate_svf
from jaxseg.metrics import (
    METRICS,
    asd,
    assd,
    dice,
    evaluate_case,
    hausdorff,
    hd95,
    inverse_consistency,
    jaccard,
    largest_component,
)

FUNCTIONS = {
    "dice": dice,
    "jaccard": jaccard,
    "hd95": hd95,
    "hausdorff": hausdorff,
    "asd": asd,
    "assd": assd,
}
DISTANCES = ("hd95", "hausdorff", "asd", "assd")


def medpy_values(pred, ref, spacing):
    """The six metrics as medpy computes them (both masks non-empty)."""
    medpy_binary = pytest.importorskip("medpy.metric.binary")
    kw = {"voxelspacing": spacing}
    return {
        "dice": medpy_binary.dc(pred, ref),
        "jaccard": medpy_binary.jc(pred, ref),
        "hd95": medpy_binary.hd95(pred, ref, **kw),
        "hausdorff": medpy_binary.hd(pred, ref, **kw),
        "asd": medpy_binary.asd(pred, ref, **kw),
        "assd": medpy_binary.assd(pred, ref, **kw),
    }


def assert_matches_medpy(pred, ref, spacing):
    expected = medpy_values(pred, ref, spacing)
    for name, fn in FUNCTIONS.items():
        got = fn(pred, ref, spacing=spacing)
        assert isinstance(got, float), name
        assert got == pytest.approx(expected[name], rel=1e-6, abs=1e-12), name


def blob_pair(shape, seed, *, fraction, error=0.4):
    """A smooth organ-like reference blob and a perturbed prediction of about the same size."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij", sparse=True)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.5)
    level = texture / texture.std() - 2.0 * sum(g**2 for g in grids)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    threshold = np.quantile(level, 1 - fraction)
    return level + error * noise / noise.std() > threshold, level > threshold


def ball(shape, center, radius, spacing):
    """Voxels whose centre lies within ``radius`` (mm) of ``center`` (mm)."""
    axes = (np.arange(n) * s for n, s in zip(shape, spacing, strict=True))
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    return sum((g - c) ** 2 for g, c in zip(grids, center, strict=True)) <= radius**2


SPACINGS = {
    2: [None, (0.625, 0.625), (0.7, 2.2)],
    3: [None, (0.625, 0.625, 0.625), (1.5, 0.8, 3.0)],
}


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("spacing_index", [0, 1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_matches_medpy_on_smooth_blobs(ndim, spacing_index, seed):
    shape = (41, 36) if ndim == 2 else (26, 30, 22)
    fraction = (0.05, 0.15, 0.4)[seed % 3]  # the largest ones touch the array edge
    pred, ref = blob_pair(shape, seed, fraction=fraction)
    assert pred.any() and ref.any()
    assert_matches_medpy(pred, ref, SPACINGS[ndim][spacing_index])


@pytest.mark.parametrize("spacing", [None, (0.9, 1.7, 0.6)])
def test_matches_medpy_on_a_label_sized_case(spacing):
    pred, ref = blob_pair((64, 56, 48), 11, fraction=0.1, error=0.8)
    assert_matches_medpy(pred, ref, spacing)


@pytest.mark.parametrize("spacing", [None, (2.0, 0.5, 1.0)])
def test_masks_filling_the_array_edge(spacing):
    # Foreground on the array edge is surface (medpy erodes with border_value=0): a full array
    # against a slab touching three of its faces.
    full = np.ones((9, 10, 11), bool)
    slab = np.zeros_like(full)
    slab[:4] = True
    assert_matches_medpy(full, slab, spacing)
    assert_matches_medpy(slab, full, spacing)
    # A single edge voxel against the full array is on the full array's surface.
    corner = np.zeros_like(full)
    corner[0, 0, 0] = True
    assert hausdorff(corner, full, spacing=spacing) > 0
    assert asd(corner, full, spacing=spacing) == 0.0
    assert_matches_medpy(corner, full, spacing)


@pytest.mark.parametrize("spacing", [None, (0.4, 1.3, 2.1)])
def test_far_apart_objects(spacing):
    # Distances far beyond the probed neighbourhood take the exact k-d tree path.
    pred = np.zeros((48, 40, 36), bool)
    ref = np.zeros_like(pred)
    pred[2:9, 3:8, 2:6] = True
    pred[30:34, 30:33, 28:34] = True  # one part of pred is near ref, one is not
    ref[28:36, 26:34, 24:30] = True
    ref[45:47, 2:4, 33:35] = True
    assert_matches_medpy(pred, ref, spacing)


@pytest.mark.parametrize("ndim", [2, 3])
def test_single_voxels(ndim):
    spacing = (0.5, 1.5, 2.0)[:ndim]
    pred = np.zeros((12,) * ndim, bool)
    ref = np.zeros_like(pred)
    pred[(1,) * ndim] = True
    ref[(4, 5, 3)[:ndim]] = True
    expected = math.dist(np.multiply((1,) * ndim, spacing), np.multiply((4, 5, 3)[:ndim], spacing))
    for name in DISTANCES:
        assert FUNCTIONS[name](pred, ref, spacing=spacing) == pytest.approx(expected, rel=1e-12)
    assert dice(pred, ref) == 0.0
    assert_matches_medpy(pred, ref, spacing)
    assert_matches_medpy(pred, pred, spacing)


def test_identical_masks_have_zero_distance():
    _, ref = blob_pair((30, 28, 24), 3, fraction=0.2)
    for name in DISTANCES:
        assert FUNCTIONS[name](ref, ref, spacing=(0.7, 0.7, 2.5)) == 0.0
    assert dice(ref, ref) == 1.0
    assert jaccard(ref, ref) == 1.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 1.0, 2.0), (0.7, 0.7, 1.5)])
def test_concentric_spheres(spacing):
    # Digital spheres of radius 10 and 14 mm: every surface distance is close to 4 mm, within
    # about half a voxel of discretisation error on each surface.
    shape = tuple(math.ceil(40 / s) for s in spacing)
    inner = ball(shape, (20.0, 20.0, 20.0), 10.0, spacing)
    outer = ball(shape, (20.0, 20.0, 20.0), 14.0, spacing)
    tolerance = max(spacing)
    for pred, ref in ((inner, outer), (outer, inner)):
        assert asd(pred, ref, spacing=spacing) == pytest.approx(4.0, abs=tolerance / 2)
        assert assd(pred, ref, spacing=spacing) == pytest.approx(4.0, abs=tolerance / 2)
        assert 4.0 <= hausdorff(pred, ref, spacing=spacing) <= 4.0 + tolerance
        assert 4.0 - tolerance <= hd95(pred, ref, spacing=spacing) <= 4.0 + tolerance
    expected_dice = 2 * inner.sum() / (inner.sum() + outer.sum())
    assert dice(inner, outer) == pytest.approx(expected_dice, rel=1e-12)
    assert dice(inner, outer) == pytest.approx(2 * 10**3 / (10**3 + 14**3), abs=0.02)


@pytest.mark.parametrize("shift", [1, 3])
def test_translated_sphere_hausdorff_is_the_shift(shift):
    # The front of the shifted sphere is exactly `shift` voxels from the original sphere.
    spacing = (1.25, 0.8, 0.8)
    ref = ball((30, 30, 30), (15 * 1.25, 12.0, 12.0), 8.0, spacing)
    pred = np.roll(ref, shift, axis=0)
    assert hausdorff(pred, ref, spacing=spacing) == pytest.approx(shift * 1.25, rel=1e-12)


def test_accepts_jax_and_integer_arrays():
    pred, ref = blob_pair((24, 26, 20), 5, fraction=0.2)
    for name, fn in FUNCTIONS.items():
        expected = fn(pred, ref)
        assert fn(jnp.asarray(pred), jnp.asarray(ref)) == expected, name
        assert fn(pred.astype(np.uint8) * 3, ref.astype(np.float32)) == expected, name


def test_largest_component_matches_skimage():
    measure = pytest.importorskip("skimage.measure")
    rng = np.random.default_rng(0)
    for shape in [(40, 50), (20, 24, 18)]:
        for _ in range(5):
            mask = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0) > 0.3
            labels = measure.label(mask)  # full connectivity by default
            assert labels.max() > 1
            expected = labels == np.argmax(np.bincount(labels.flat)[1:]) + 1
            np.testing.assert_array_equal(largest_component(mask), expected)


def test_largest_component_connectivity_and_ties():
    # Voxels touching only at a corner are one component (26-connectivity).
    diagonal = np.zeros((5, 5, 5), int)
    diagonal[[0, 1, 2], [0, 1, 2], [0, 1, 2]] = 7
    diagonal[4, 4, 4] = 1
    expected = diagonal == 7
    np.testing.assert_array_equal(largest_component(diagonal), expected)
    # Equal sizes: the component met first in C order wins.
    tie = np.zeros((6, 6), bool)
    tie[4:6, 0:2] = True
    tie[0:2, 4:6] = True
    kept = largest_component(tie)
    assert kept[0, 4] and not kept[4, 0]
    assert not largest_component(np.zeros((4, 4))).any()


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_empty_masks_follow_the_policy(name):
    fn = FUNCTIONS[name]
    some = np.zeros((8, 9, 10), bool)
    some[2:5, 3:6, 4:7] = True
    none = np.zeros_like(some)
    # Both empty: undefined for every metric.
    assert math.isnan(fn(none, none))
    assert fn(none, none, empty=1.0) == 1.0
    assert fn(none, none, empty=-3) == -3.0
    for pred, ref in ((some, none), (none, some)):
        if name in ("dice", "jaccard"):
            # Defined (no overlap) whatever the policy.
            assert fn(pred, ref) == 0.0
            assert fn(pred, ref, empty=1.0) == 0.0
        else:
            assert math.isnan(fn(pred, ref))
            assert fn(pred, ref, empty=123.5) == 123.5


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("policy", ["zero", "NaN", None, True, [1.0]])
def test_invalid_empty_policy_raises(name, policy):
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="empty must be"):
        FUNCTIONS[name](mask, mask, empty=policy)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_shape_and_spacing_errors(name):
    fn = FUNCTIONS[name]
    a = np.ones((4, 5, 6), bool)
    with pytest.raises(ValueError, match=r"pred \(4, 5, 6\) and ref \(4, 5\)"):
        fn(a, np.ones((4, 5), bool))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        fn(a, a, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        fn(a, a, spacing=(1.0, 0.0, 1.0))


def test_evaluate_case_reuses_the_single_metrics():
    pred_1, ref_1 = blob_pair((28, 30, 24), 7, fraction=0.15)
    pred_2, ref_2 = blob_pair((28, 30, 24), 8, fraction=0.05)
    pred = np.where(pred_1, 1, np.where(pred_2, 2, 0)).astype(np.int16)
    ref = np.where(ref_1, 1, np.where(ref_2, 2, 0)).astype(np.int16)
    spacing = (0.8, 0.8, 1.6)
    result = evaluate_case(pred, ref, spacing=spacing, labels=(1, 2))
    assert list(result["labels"]) == [1, 2]
    for label in (1, 2):
        assert set(result["labels"][label]) == set(METRICS)
        for name, fn in FUNCTIONS.items():
            expected = fn(pred == label, ref == label, spacing=spacing)
            assert result["labels"][label][name] == expected, (label, name)
    for name in METRICS:
        values = [result["labels"][label][name] for label in (1, 2)]
        assert result["mean"][name] == pytest.approx(np.mean(values), rel=1e-12)
    assert result["empty"] == {"pred": [], "ref": []}


def test_evaluate_case_records_empty_masks():
    ref = np.zeros((10, 12, 8), np.uint8)
    ref[2:6, 3:8, 2:5] = 1
    ref[7:9, 2:4, 1:3] = 2
    pred = np.where(ref == 1, 1, 0)  # label 2 is missed; label 3 is in neither
    result = evaluate_case(pred, ref, spacing=None, labels=[1, 2, 3])
    assert result["empty"] == {"pred": [2, 3], "ref": [3]}
    assert result["labels"][1] == dict.fromkeys(METRICS, 0.0) | {"dice": 1.0, "jaccard": 1.0}
    assert result["labels"][2]["dice"] == 0.0
    assert math.isnan(result["labels"][2]["hd95"])
    assert all(math.isnan(v) for v in result["labels"][3].values())
    assert math.isnan(result["mean"]["hd95"])
    penalised = evaluate_case(pred, ref, spacing=(1.0, 1.0, 2.0), labels=[2], empty=50.0)
    assert penalised["mean"] == {"dice": 0.0, "jaccard": 0.0} | dict.fromkeys(
        ("hd95", "hausdorff", "asd", "assd"), 50.0
    )


def test_evaluate_case_errors():
    a = np.zeros((4, 5, 6), int)
    with pytest.raises(ValueError, match=r"pred \(4, 5, 6\) and ref \(4, 6, 5\)"):
        evaluate_case(a, np.zeros((4, 6, 5), int), spacing=None, labels=[1])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        evaluate_case(a, a, spacing=(1.0,), labels=[1])
    with pytest.raises(ValueError, match="at least one label"):
        evaluate_case(a, a, spacing=None, labels=[])


def test_inverse_consistency_of_a_constant_shift():
    labels = np.zeros((16, 14, 12), np.int32)
    labels[4:9, 3:9, 2:8] = 1
    labels[9:12, 5:11, 4:9] = 2
    fwd = np.zeros((*labels.shape, 3), np.float32)
    fwd[..., 0] = 2.0
    inv = np.zeros_like(fwd)
    result = inverse_consistency(fwd, inv, labels)
    assert result["mice"] == 2.0
    assert inverse_consistency(fwd, inv, labels, spacing=(1.5, 1.0, 1.0))["mice"] == 3.0
    # The round trip moves by +2 voxels along axis 0: the warped map is labels(x + 2 e_0).
    rolled = np.roll(labels, -2, axis=0)
    expected = np.mean([dice(labels == label, rolled == label) for label in (1, 2)])
    assert result["ic_dice"] == pytest.approx(expected, rel=1e-12)
    assert result["ic_dice"] < 1.0


def test_inverse_consistency_of_an_integrated_velocity_field():
    rng = np.random.default_rng(1)
    shape = (20, 22, 18)
    velocity = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal(shape), 4.0) for _ in range(3)], axis=-1
    )
    velocity *= 2.0 / np.abs(velocity).max()  # up to 2 voxels
    velocity = jnp.asarray(velocity, jnp.float32)
    fwd = integrate_svf(velocity)
    inv = integrate_svf(-velocity)
    labels = ball(shape, (10.0, 11.0, 9.0), 6.0, (1.0, 1.0, 1.0)).astype(np.uint8)
    consistent = inverse_consistency(fwd, inv, labels)
    inconsistent = inverse_consistency(fwd, jnp.zeros_like(fwd), labels)
    assert float(np.abs(np.asarray(fwd)).max()) > 0.5
    assert consistent["mice"] < 0.05
    assert consistent["mice"] < inconsistent["mice"] / 5
    assert consistent["ic_dice"] > inconsistent["ic_dice"]
    assert consistent["ic_dice"] > 0.97


def test_inverse_consistency_errors_and_empty_mask():
    mask = np.zeros((6, 7, 8), bool)
    good = np.zeros((6, 7, 8, 3), np.float32)
    with pytest.raises(ValueError, match=r"\(6, 7, 8, 3\)"):
        inverse_consistency(good, np.zeros((6, 7, 8, 2)), mask)
    with pytest.raises(ValueError, match=r"\(6, 7, 8, 3\)"):
        inverse_consistency(np.zeros((7, 6, 8, 3)), good, mask)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        inverse_consistency(good, good, mask, spacing=(1.0, 1.0))
    result = inverse_consistency(good, good, mask)
    assert math.isnan(result["mice"]) and math.isnan(result["ic_dice"])
