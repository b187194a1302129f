"""Whole-volume evaluation: predictions, label maps, metrics against analytic values and medpy.

The network in these tests is the identity (times a scale taken from ``variables``), so the
image itself encodes the prediction: an image of 0.9 inside a box and 0.1 outside is predicted
as exactly that box, whatever windows average over it.
"""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxseg.data.case import Case
from jaxseg.train.evaluate import evaluate, predict_volume, probabilities_to_labels

SHAPE = (24, 20, 16)
PATCH = (16, 16, 8)
STRIDE = (8, 8, 4)
# Box A (the prediction) has 10 * 10 * 8 = 800 voxels, box B (the reference) 12 * 8 * 8 = 768;
# they share 8 * 7 * 6 = 336 voxels, so Dice = 672 / 1568 = 3 / 7 and Jaccard = 336 / 1232.
BOX_A = (slice(4, 14), slice(5, 15), slice(3, 11))
BOX_B = (slice(6, 18), slice(4, 12), slice(5, 13))
DICE_AB = 2 * 336 / (800 + 768)
JACCARD_AB = 336 / (800 + 768 - 336)
# A box apart from A and B, a small blob apart from A (inside C), and a corner apart from all.
BOX_C = (slice(18, 22), slice(15, 19), slice(12, 15))
BLOB = (slice(20, 22), slice(17, 19), slice(13, 15))
CORNER = (slice(0, 2), slice(0, 2), slice(0, 2))
SPACING = (0.8, 1.25, 2.5)
VARIABLES = {"scale": np.float32(1.0)}
KEYS = (
    "dice", "jaccard", "hd95", "hausdorff", "asd", "assd",
    "hd95_voxels", "hausdorff_voxels", "asd_voxels", "assd_voxels",
)  # fmt: skip
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def scaled_identity(variables, patches):
    """The 'network': its input times ``variables["scale"]``, clipped to [0, 1]."""
    return jnp.clip(patches * variables["scale"], 0.0, 1.0)


def mask(*boxes, shape=SHAPE):
    out = np.zeros(shape, np.int32)
    for box in boxes:
        out[box] = 1
    return out


def box_image(*boxes, shape=SHAPE):
    """(*S, 1) image of 0.9 inside the boxes and 0.1 outside."""
    return np.where(mask(*boxes, shape=shape) > 0, 0.9, 0.1).astype(np.float32)[..., None]


def box_case(case_id, pred_boxes, ref_boxes, spacing=SPACING):
    return Case(id=case_id, image=box_image(*pred_boxes), label=mask(*ref_boxes), spacing=spacing)


def run(cases, **kwargs):
    kwargs = {"patch": PATCH, "stride": STRIDE, "progress": False, **kwargs}
    return evaluate(scaled_identity, VARIABLES, cases, **kwargs)


def nan_to_none(obj):
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def test_evaluate_matches_analytic_overlap_and_medpy():
    binary = pytest.importorskip("medpy.metric.binary")
    result = run([box_case("boxes", [BOX_A], [BOX_B])])
    record = result["cases"][0]
    assert record["id"] == "boxes"
    assert record["dice"] == pytest.approx(DICE_AB, abs=1e-12)
    assert record["jaccard"] == pytest.approx(JACCARD_AB, abs=1e-12)

    pred, ref = mask(BOX_A).astype(bool), mask(BOX_B).astype(bool)
    medpy_fns = {"hd95": binary.hd95, "hausdorff": binary.hd, "asd": binary.asd}
    medpy_fns["assd"] = binary.assd
    for name, fn in medpy_fns.items():
        assert record[name] == pytest.approx(fn(pred, ref, voxelspacing=SPACING), rel=1e-9)
        assert record[f"{name}_voxels"] == pytest.approx(fn(pred, ref), rel=1e-9)
    # The anisotropic spacing matters, so mm and voxel values are told apart.
    assert record["hd95"] != pytest.approx(record["hd95_voxels"])

    assert set(record) == {"id", "labels", *KEYS}
    assert record["labels"] == {"1": {key: record[key] for key in KEYS}}
    assert all(type(record[key]) is float for key in KEYS)
    assert result["num_cases"] == 1
    assert result["mean"] == {key: record[key] for key in KEYS}
    assert result["std"] == {key: 0.0 for key in KEYS}
    assert result["empty"] == {"pred": [], "ref": []}
    assert result["protocol"] == {
        "patch": list(PATCH),
        "stride": list(STRIDE),
        "blend": "mean",
        "threshold": 0.5,
        "largest_component": False,
        "empty": "nan",
        "units": "mm (voxels for *_voxels)",
        "network_spacing": None,
    }


def test_predict_volume_traces_once_per_shape_and_takes_variables(rng):
    traces = []

    def first_channel(variables, patches):
        traces.append(patches.shape)
        return patches[..., :1] * variables["w"]

    options = {"patch": PATCH, "stride": STRIDE, "batch_size": 2}
    one = rng.random((*SHAPE, 2), dtype=np.float32)
    two = rng.random((*SHAPE, 2), dtype=np.float32)
    out = predict_volume(first_channel, {"w": np.float32(2.0)}, one, **options)
    assert isinstance(out, np.ndarray) and out.shape == (*SHAPE, 1)
    np.testing.assert_allclose(out, 2.0 * one[..., :1], rtol=1e-6)
    traced = len(traces)
    assert traced > 0

    # Same volume shape, new variable values: no new trace, and the new values are used.
    out = predict_volume(first_channel, {"w": np.float32(3.0)}, two, **options)
    np.testing.assert_allclose(out, 3.0 * two[..., :1], rtol=1e-6)
    assert len(traces) == traced

    # A new volume shape compiles again.
    predict_volume(first_channel, {"w": np.float32(3.0)}, two[:20], **options)
    assert len(traces) > traced


def test_predict_volume_window_errors_come_from_sliding_window():
    image = box_image(BOX_A)
    with pytest.raises(ValueError, match="stride"):
        predict_volume(scaled_identity, VARIABLES, image, patch=PATCH, stride=(8, 8, 9))
    with pytest.raises(ValueError, match="rank"):
        predict_volume(scaled_identity, VARIABLES, image[0], patch=PATCH, stride=STRIDE)


def test_threshold_is_strict_and_argmax_for_several_channels(rng):
    above = np.nextafter(np.float32(0.5), np.float32(1.0))
    prob = np.array([[0.5, above], [0.2, 0.9]], np.float32)[..., None]
    labels = probabilities_to_labels(prob)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [[0, 1], [0, 1]])
    # Equal to the threshold (0.2 as float32) is background.
    at = float(np.float32(0.2))
    np.testing.assert_array_equal(probabilities_to_labels(prob, threshold=at), [[1, 1], [0, 1]])
    np.testing.assert_array_equal(probabilities_to_labels(prob, threshold=0.1), [[1, 1], [1, 1]])

    multi = rng.random((6, 5, 4, 3)).astype(np.float32)
    labels = probabilities_to_labels(multi, threshold=0.99)  # ignored for K > 1
    assert labels.shape == (6, 5, 4) and labels.dtype == np.int32
    chosen = np.take_along_axis(multi, labels[..., None], axis=-1)[..., 0]
    np.testing.assert_array_equal(chosen, multi.max(axis=-1))
    assert set(np.unique(labels)) == {0, 1, 2}

    with pytest.raises(ValueError, match="K"):
        probabilities_to_labels(np.zeros(5))
    with pytest.raises(ValueError, match="threshold"):
        probabilities_to_labels(prob, threshold=math.nan)


def test_evaluate_several_channels_per_label():
    # Channel 0 (background) 0.5 everywhere; channel 1 is 0.9 in box A, channel 2 in box C.
    image = np.concatenate(
        [np.full((*SHAPE, 1), 0.5, np.float32), box_image(BOX_A), box_image(BOX_C)], axis=-1
    )
    label = mask(BOX_B) + 2 * mask(BOX_C)
    case = Case(id="multi", image=image, label=label, spacing=SPACING)
    record = run([case])["cases"][0]
    assert set(record["labels"]) == {"1", "2"}
    assert record["labels"]["1"]["dice"] == pytest.approx(DICE_AB)
    assert record["labels"]["2"]["dice"] == 1.0
    assert record["labels"]["2"]["hd95"] == 0.0
    for key in KEYS:
        expected = (record["labels"]["1"][key] + record["labels"]["2"][key]) / 2
        assert record[key] == pytest.approx(expected)

    # A reference label beyond the network's channels is evaluated too (and missed).
    extra = Case(id="extra", image=image, label=label + 3 * mask(CORNER), spacing=SPACING)
    result = run([extra])
    labels = result["cases"][0]["labels"]
    assert set(labels) == {"1", "2", "3"}
    assert labels["3"]["dice"] == 0.0 and math.isnan(labels["3"]["hd95"])
    assert result["empty"] == {"pred": ["extra"], "ref": []}


def test_largest_component_removes_a_separate_blob():
    case = box_case("blob", [BOX_A, BLOB], [BOX_A])
    plain = run([case])["cases"][0]
    assert plain["dice"] == pytest.approx(2 * 800 / (808 + 800))
    assert plain["hausdorff"] > 0
    kept = run([case], largest_component=True)
    assert kept["cases"][0]["dice"] == 1.0
    assert kept["cases"][0]["hausdorff"] == 0.0
    assert kept["protocol"]["largest_component"] is True

    # Per label: label 1's small component goes to background, label 2 is untouched.
    prob = np.zeros((*SHAPE, 3), np.float32)
    prob[..., 0] = 0.5
    prob[..., 1] = box_image(BOX_A, BLOB)[..., 0]
    prob[..., 2] = box_image(BOX_C)[..., 0]
    prob[(*BLOB, 2)] = 0.0  # the blob lies inside box C: keep it label 1
    labels = probabilities_to_labels(prob, largest_component=True)
    np.testing.assert_array_equal(labels == 1, mask(BOX_A) > 0)
    np.testing.assert_array_equal(labels == 2, (mask(BOX_C) > 0) & (mask(BLOB) == 0))


def test_empty_prediction_is_nan_counted_and_null_in_json(tmp_path):
    cases = [
        Case(id="empty", image=box_image(), label=mask(BOX_B), spacing=SPACING),
        box_case("boxes", [BOX_A], [BOX_B]),
    ]
    result = run(cases, out_dir=tmp_path, num_figures=0)
    missed, hit = result["cases"]
    assert missed["dice"] == 0.0 and missed["jaccard"] == 0.0
    for key in ("hd95", "hausdorff", "asd", "assd", "hd95_voxels"):
        assert math.isnan(missed[key]) and math.isnan(missed["labels"]["1"][key])
    assert result["empty"] == {"pred": ["empty"], "ref": []}
    # The mean and std ignore the NaN values (but not the defined Dice of 0).
    assert result["mean"]["hd95"] == hit["hd95"]
    assert result["std"]["hd95"] == 0.0
    assert result["mean"]["dice"] == pytest.approx(DICE_AB / 2)
    assert result["std"]["dice"] == pytest.approx(DICE_AB / 2)  # population std of {0, d}

    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text
    stored = json.loads(text)
    assert stored["cases"][0]["hd95"] is None
    assert stored["cases"][0]["labels"]["1"]["asd"] is None
    assert stored["empty"]["pred"] == ["empty"]
    assert stored["mean"]["hd95"] == pytest.approx(hit["hd95"])

    # A number as the policy replaces the NaN; the case is still counted as empty.
    penalised = run(cases, empty=50.0)
    assert penalised["cases"][0]["hd95"] == 50.0
    assert penalised["mean"]["hd95"] == pytest.approx((50.0 + hit["hd95"]) / 2)
    assert penalised["empty"]["pred"] == ["empty"]
    assert penalised["protocol"]["empty"] == 50.0


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 2000, path
    with Image.open(path) as image:
        image.verify()


def test_out_dir_writes_metrics_and_figures(tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text("{not json")  # an earlier, broken file is replaced whole
    cases = [box_case("first", [BOX_A], [BOX_B]), box_case("second", [BOX_A, BLOB], [BOX_A])]
    result = evaluate(
        scaled_identity,
        VARIABLES,
        iter(cases),  # any iterable
        patch=PATCH,
        stride=STRIDE,
        out_dir=out,
        num_figures=1,
        progress=True,
    )
    assert "evaluate" in capsys.readouterr().err

    stored = json.loads((out / "metrics.json").read_text())
    assert set(stored) == {"cases", "mean", "std", "empty", "num_cases", "protocol"}
    assert stored == nan_to_none(result)
    assert [c["id"] for c in stored["cases"]] == ["first", "second"]
    assert stored["num_cases"] == 2
    assert stored["mean"]["dice"] == pytest.approx((DICE_AB + 1600 / 1608) / 2)

    figures = out / "figures"
    assert_png(figures / "first.png")
    assert_png(figures / "dice.png")
    assert not (figures / "second.png").exists()
    leftovers = [name for _, _, names in os.walk(out) for name in names if name.startswith(".")]
    assert leftovers == []


def test_two_dimensional_cases_and_figures(tmp_path):
    shape = (24, 20)
    pred_box, ref_box = (slice(4, 14), slice(5, 15)), (slice(6, 18), slice(4, 12))
    image = np.where(mask(pred_box, shape=shape) > 0, 0.9, 0.1).astype(np.float32)[..., None]
    case = Case(id="scan/01", image=image, label=mask(ref_box, shape=shape), spacing=(1.0, 2.0))
    result = evaluate(
        scaled_identity,
        VARIABLES,
        [case],
        patch=(16, 16),
        stride=8,
        out_dir=tmp_path,
        progress=False,
    )
    # 100 and 96 pixels sharing 8 * 7 = 56.
    assert result["cases"][0]["dice"] == pytest.approx(2 * 56 / (100 + 96))
    assert result["protocol"]["stride"] == [8, 8]
    assert_png(tmp_path / "figures" / "scan_01.png")
    assert_png(tmp_path / "figures" / "dice.png")


def test_invalid_cases_raise():
    labelled = box_case("labelled", [BOX_A], [BOX_B])
    unlabelled = Case(id="unlabelled-7", image=box_image(BOX_A), spacing=SPACING)
    with pytest.raises(ValueError, match="unlabelled-7"):
        run([labelled, unlabelled])
    with pytest.raises(ValueError, match="unlabelled-7"):
        run(iter([unlabelled]))
    with pytest.raises(ValueError, match="empty"):
        run([])
    with pytest.raises(ValueError, match="empty"):
        run(iter([]))
    with pytest.raises(ValueError, match="empty"):
        run([labelled], empty="zero")
    with pytest.raises(ValueError, match="patch"):
        run([labelled], patch=(16, 16))


def test_network_spacing_predicts_coarse_and_scores_on_the_case_grid():
    """A network at twice the case's spacing: the case is halved for prediction and the
    probabilities brought back, so the metrics are those of the case's own grid and label.

    The boxes have even bounds, so each is a whole box of the coarse grid (0.9 in, 0.1 out).
    Back on the fine grid, an outer voxel of the box takes weight 3/4 from inside per axis it
    borders on: 0.7 on a face, 0.55 on an edge, 0.1 + 0.8 * 27 / 64 = 0.4375 at a corner, and
    at most 0.3 outside. Thresholded at 0.5 the prediction is box A without its 8 corner voxels,
    and the metrics equal medpy's for that mask on the fine grid.
    """
    binary = pytest.importorskip("medpy.metric.binary")
    box_a = (slice(4, 14), slice(6, 16), slice(2, 10))
    box_b = (slice(6, 18), slice(4, 12), slice(4, 12))
    fine = (0.4, 0.625, 1.25)
    coarse = tuple(2 * s for s in fine)
    case = box_case("fine", [box_a], [box_b], spacing=fine)
    result = run([case], patch=(8, 8, 8), stride=(4, 4, 4), spacing=coarse)
    record = result["cases"][0]
    pred, ref = mask(box_a).astype(bool), mask(box_b).astype(bool)
    for x in (4, 13):
        for y in (6, 15):
            for z in (2, 9):
                pred[x, y, z] = False
    assert record["dice"] == pytest.approx(binary.dc(pred, ref), abs=1e-12)
    for name, fn in {"hd95": binary.hd95, "asd": binary.asd, "assd": binary.assd}.items():
        assert record[name] == pytest.approx(fn(pred, ref, voxelspacing=fine), rel=1e-9)
        assert record[f"{name}_voxels"] == pytest.approx(fn(pred, ref), rel=1e-9)
    assert result["protocol"]["network_spacing"] == list(coarse)
    # A case already at the network's spacing is predicted as it is.
    same = run([box_case("same", [BOX_A], [BOX_B])], spacing=SPACING)
    assert same["cases"][0]["dice"] == pytest.approx(DICE_AB, abs=1e-12)


def test_output_functions_of_equal_configs_share_one_compilation():
    """``OutputFn`` built anew per case compares equal for equal config values, so the sliding
    window's cache reuses one compiled program; another output or config value is another."""
    from jaxseg.train.config import base_config
    from jaxseg.train.evaluate import OutputFn, _jitted_sliding_window

    def predict(config, variables, patches):
        return {"prob": patches * config.eval.threshold, "other": patches}

    a, b = OutputFn(predict, base_config()), OutputFn(predict, base_config())
    assert a == b and hash(a) == hash(b)
    assert a != OutputFn(predict, base_config(), "other")
    changed = base_config()
    changed.eval.threshold = 0.25
    assert a != OutputFn(predict, changed)
    options = ((8, 8), (8, 8), 1, "mean")
    assert _jitted_sliding_window(a, *options) is _jitted_sliding_window(b, *options)
