"""STIPPLE as a method: the prior in the activation and the loss, the training cases and their
augmentation, positioning, pseudo-labelling rounds, resumption and the CLI.

The pure functions it builds on (:mod:`jaxseg.priors`) are tested against NumPy in
``test_priors.py``; here the method's pieces are checked against those functions or against
direct NumPy statements of their specification.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.data import Case, RandomChannelShift, Split
from jaxseg.methods import get_method
from jaxseg.methods.stipple import cases as C
from jaxseg.methods.stipple import model as M
from jaxseg.methods.stipple import relabel as R
from jaxseg.priors import place_prior, prior_driven_softmax
from jaxseg.train.config import load_config

METHOD = get_method("stipple")


@pytest.fixture(scope="module")
def config():
    return load_config("stipple:smoke")


@pytest.fixture(scope="module")
def state(config):
    return jax.jit(lambda key: METHOD.create_state(config, key))(jax.random.key(0))


def _prior(config, seed=0):
    rng = np.random.default_rng(seed)
    w, h, _ = (int(n) for n in config.prior.size)
    return rng.uniform(0, 1, (w, h, int(config.prior.bins))).astype(np.float32)


def _images(config, batch=4, seed=0):
    """Patches (B, *P, 4): image, prior in (0, 1) with exact 0 and 1, pseudo-label and mask."""
    rng = np.random.default_rng(seed)
    shape = (batch, *config.data.patch)
    prior = rng.uniform(0, 1, shape)
    prior.flat[:3] = (0.0, 1.0, 0.5)
    channels = [rng.normal(size=shape), prior, rng.random(shape) < 0.3, rng.random(shape) < 0.6]
    return np.stack(channels, -1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Prediction and loss


def test_predict_is_the_prior_driven_softmax_and_uniform_prior_the_plain_one(config, state):
    images = jnp.asarray(_images(config)[..., :2])
    net = state.nets["seg"]
    logits = M.network(config).apply(net.variables, images[:, :, :, 0, :1], train=False)["logits"]
    prob = M.predict(config, state.nets, images)["prob"]
    p = images[:, :, :, 0, 1]
    expected = prior_driven_softmax(logits, jnp.stack([1 - p, p], -1))[..., 1]
    np.testing.assert_allclose(prob[:, :, :, 0, 0], expected, rtol=1e-5, atol=1e-7)
    # p = 0 and 1 decide the voxel (up to the clamp at the smallest normal float32)
    assert np.all(np.isfinite(prob)) and prob[0, 0, 0, 0, 0] < 1e-30
    assert prob[0, 0, 1, 0, 0] == 1.0
    uniform = images.at[..., 1].set(0.5)
    plain = jax.nn.softmax(logits, -1)[..., 1]
    got = M.predict(config, state.nets, uniform)["prob"][:, :, :, 0, 0]
    np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-7)


def test_bfloat16_prediction_keeps_the_log_prior_in_float32(config, state):
    """In bfloat16, 1 - 0.999 rounds to 0 (the largest value below 1 is 1 - 2^-8): the log prior
    must be taken in float32, or a prior of 0.999 would give the background a log prior of -87
    instead of -6.9."""
    images = jnp.asarray(_images(config)[..., :2]).at[..., 1].set(0.999)
    logits = jnp.asarray(np.random.default_rng(8).normal(size=(4, 32, 32, 2)), jnp.bfloat16)
    mixed = load_config("stipple:smoke", ["train.precision=bfloat16"])
    fused = M._fused_logits(mixed, logits, images)
    assert fused.dtype == jnp.float32
    log_prior = np.log(np.array([0.001, 0.999], np.float32))
    expected = np.asarray(logits, np.float32)[:, :, :, None] + log_prior
    np.testing.assert_allclose(fused, expected, rtol=1e-4)
    prob = M.predict(mixed, state.nets, images)["prob"]
    assert prob.dtype == jnp.float32
    np.testing.assert_allclose(prob, M.predict(config, state.nets, images)["prob"], atol=2e-2)


def _numpy_loss(config, state, batch):
    """Cross-entropy + Dice of the prior-driven softmax in NumPy from the network's logits, its
    batch statistics those of the items with a target (all labelled items, and unlabelled ones
    whose mask selects a voxel)."""
    net = state.nets["seg"]
    image = np.asarray(batch["image"], np.float64)
    with_target = np.asarray(batch["labelled"]) | (image[..., 3] > 0.5).any(axis=(1, 2, 3))
    logits, _ = M.network(config).apply(
        net.variables,
        batch["image"][:, :, :, 0, :1],
        train=True,
        batch_mask=jnp.asarray(with_target),
        mutable=["batch_stats"],
    )
    logits = np.asarray(logits["logits"], np.float64)[:, :, :, None]
    p = np.clip(image[..., 1], np.finfo(np.float32).tiny, None)
    q = np.clip(1 - image[..., 1], np.finfo(np.float32).tiny, None)
    fused = logits + np.log(np.stack([q, p], -1))
    fused -= fused.max(-1, keepdims=True)
    log_probs = fused - np.log(np.exp(fused).sum(-1, keepdims=True))
    labelled = np.asarray(batch["labelled"])[:, None, None, None]
    target = np.where(labelled, batch["label"] == 1, image[..., 2] > 0.5)
    weight = np.where(labelled, 1.0, image[..., 3] > 0.5)
    ce = -(weight * np.where(target, log_probs[..., 1], log_probs[..., 0])).sum() / weight.sum()
    prob = np.exp(log_probs[..., 1]) * weight
    t = target * weight
    dice = 1 - (2 * (prob * t).sum() + 1e-5) / (prob.sum() + t.sum() + 1e-5)
    return ce, dice


def test_step_loss_is_cross_entropy_plus_dice_on_labels_and_selected_pseudo_labels(config, state):
    images = _images(config, batch=4, seed=1)
    rng = np.random.default_rng(2)
    batch = {
        "image": jnp.asarray(images),
        "label": jnp.asarray(rng.random(images.shape[:-1]) < 0.2, jnp.int32),
        "labelled": jnp.asarray([True, True, False, False]),
    }
    ce, dice = _numpy_loss(config, state, batch)
    _, metrics = jax.jit(M.make_train_step(config))(state, batch, jax.random.key(0))
    assert float(metrics["loss_ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(metrics["loss_dice"]) == pytest.approx(dice, rel=1e-5)
    assert float(metrics["loss"]) == pytest.approx(ce + config.loss.dice * dice, rel=1e-5)
    # The pseudo-label mask decides which voxels of unlabelled items count: clearing it leaves
    # the labelled items alone.
    cleared = {**batch, "image": batch["image"].at[2:, ..., 3].set(0.0)}
    _, metrics = jax.jit(M.make_train_step(config))(state, cleared, jax.random.key(0))
    ce_l, dice_l = _numpy_loss(config, state, cleared)
    assert float(metrics["loss_ce"]) == pytest.approx(ce_l, rel=1e-5)
    assert float(metrics["loss_dice"]) == pytest.approx(dice_l, rel=1e-5)
    assert float(metrics["target_fraction"]) == pytest.approx(0.5)
    assert abs(ce_l - ce) > 1e-4


def test_unlabelled_items_without_target_change_nothing(config, state):
    """Before the first round the unlabelled items have no target: the step with them equals
    the step on the labelled items alone, batch-norm statistics included."""
    images = _images(config, batch=4, seed=3)
    images[2:, ..., 3] = 0.0  # no voxel selected
    label = np.asarray(np.random.default_rng(4).random(images.shape[:-1]) < 0.2, np.int32)
    step = jax.jit(M.make_train_step(config))
    both = {"image": images, "label": label, "labelled": np.array([True, True, False, False])}
    alone = {"image": images[:2], "label": label[:2], "labelled": np.array([True, True])}
    results = [step(state, jax.device_put(b), jax.random.key(0)) for b in (both, alone)]
    (new_both, metrics_both), (new_alone, metrics_alone) = results
    # The loss of the training-mode forward (batch statistics) and the running averages agree;
    # the parameters are not compared: the convolution biases before batch norm have a zero
    # gradient up to rounding, which Adam's normalisation turns into updates of either sign.
    for key in ("loss", "loss_ce", "loss_dice", "train_dice"):
        assert float(metrics_both[key]) == pytest.approx(float(metrics_alone[key]), rel=1e-5)
    stats = [new.nets["seg"].batch_stats for new in (new_both, new_alone, state)]
    for a, b, before in zip(*map(jax.tree.leaves, stats), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
        assert np.abs(np.asarray(a) - np.asarray(before)).max() > 1e-4  # they did move


def test_the_3d_network_variant_trains_and_predicts_volumes():
    config = load_config(
        "stipple:smoke",
        [
            *("model.spatial_dims=3", "data.patch=(16,16,8)", "eval.patch=(16,16,8)"),
            *("eval.stride=(8,8,4)", "optim.seg.lr=0.001", "optim.seg.end_lr=0.001"),
        ],
    )
    state = jax.jit(lambda key: METHOD.create_state(config, key))(jax.random.key(1))
    images = _images(config, batch=2, seed=5)
    batch = {
        "image": jnp.asarray(images),
        "label": jnp.asarray(images[..., 2] > 0.5, jnp.int32),
        "labelled": jnp.asarray([True, True]),
    }
    step = jax.jit(M.make_train_step(config))
    losses = []
    for i in range(6):
        state, metrics = step(state, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    volume = np.random.default_rng(6).normal(size=(20, 18, 10, 1)).astype(np.float32)
    prob = C.probabilities(config, state.nets, volume)
    assert prob.shape == (20, 18, 10) and np.all((prob >= 0) & (prob <= 1))


# ---------------------------------------------------------------------------------------------
# Cases and augmentation


def test_channel_shift_moves_only_its_channels_and_fills():
    rng = np.random.default_rng(3)
    record = {"image": rng.normal(size=(6, 5, 4, 3)).astype(np.float32), "label": None, "id": "a"}
    shift = RandomChannelShift((1,), (2, 1, 3), fill=-7.0)
    out = shift.random_map(record, np.random.default_rng(11))
    offset = np.random.default_rng(11).integers(-np.array([2, 1, 3]), np.array([2, 1, 3]) + 1)
    expected = np.full((6, 5, 4), -7.0, np.float32)
    for x, y, z in np.ndindex(6, 5, 4):
        tx, ty, tz = x + offset[0], y + offset[1], z + offset[2]
        if 0 <= tx < 6 and 0 <= ty < 5 and 0 <= tz < 4:
            expected[tx, ty, tz] = record["image"][x, y, z, 1]
    np.testing.assert_array_equal(out["image"][..., 1], expected)
    np.testing.assert_array_equal(out["image"][..., [0, 2]], record["image"][..., [0, 2]])
    with pytest.raises(ValueError, match="non-negative ints"):
        RandomChannelShift((1,), (-1, 0, 0))


def _case(seed, shape=(32, 32, 24), label=True):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    lo = rng.integers(4, 12, 3)
    lab[lo[0] : lo[0] + 9, lo[1] : lo[1] + 5, lo[2] : lo[2] + 4] = 1
    image = rng.normal(size=(*shape, 1)).astype(np.float32)
    return Case(f"case{seed}", image, lab if label else None)


def test_training_cases_carry_the_prior_at_the_organ_centre_and_pseudo_labels(
    config, state, tmp_path
):
    prior = _prior(config)
    state = state.replace(prior=jnp.asarray(prior))
    labelled, unlabelled = _case(0), _case(1, label=False)
    split = Split([labelled], [unlabelled], [], {})
    data = C.training_data(config, state, split, tmp_path)
    got = data.labelled[0].image
    points = np.argwhere(labelled.label == 1)
    centre = (points.min(0) + points.max(0)) // 2
    extent = int(config.prior.size[2])
    expected = place_prior(prior, centre, labelled.spatial_shape, extent, floor=config.prior.floor)
    np.testing.assert_array_equal(got[..., 1], np.asarray(expected))
    np.testing.assert_array_equal(got[..., 2], labelled.label)
    assert got.shape[-1] == 4 and np.all(got[..., 3] == 1)
    # Unlabelled records: the pseudo-labels of the last round before their batch's step.
    batch = int(config.data.unlabelled_batch)
    pseudo = C.PseudoLabels(config, prior, tmp_path, steps=2, rounds=2, timeout=0.2)

    def record(position, case=unlabelled):
        image = case.image
        return {"image": image, "label": case.label, "id": case.id, "position": position}

    assert pseudo(record(0, labelled))["image"] is labelled.image  # labelled: unchanged
    first = pseudo(record(2 * batch - 1))["image"]  # batch 1 (step 2): before round 1
    assert first.shape[-1] == 4 and not first[..., 2:].any()
    with pytest.raises(TimeoutError, match="round_1"):
        pseudo(record(2 * batch))  # step 3 waits for round 1
    for round_, value in ((1, 1), (2, 3)):
        label = np.zeros(unlabelled.spatial_shape, np.uint8)
        label[value] = 1
        R._write(
            C.pseudo_label_file(tmp_path, round_, unlabelled.id),
            {"label": label, "weight": label, "center": np.array([value, 9, 9], np.int32)},
        )
    for position, value in ((2 * batch, 1), (4 * batch - 1, 1), (4 * batch, 3), (99 * batch, 3)):
        image = pseudo(record(position))["image"]
        assert image[value, ..., 2].all() and image[..., 2].sum() == image[value, ..., 2].size
        np.testing.assert_array_equal(image[..., 0], unlabelled.image[..., 0])
        center = np.array([value, 9, 9])
        expected = place_prior(
            prior, center, unlabelled.spatial_shape, extent, floor=config.prior.floor
        )
        np.testing.assert_array_equal(image[..., 1], np.asarray(expected))


def test_positioning_finds_the_organ_centre(config):
    prior = _prior(config, seed=4)
    shape, centre = (32, 32, 24), np.array([17, 12, 13])
    probs = C.placed_prior(config, prior, centre, shape)
    probs = np.where(probs > config.prior.floor, probs, 0.0)
    assert np.array_equal(C.position(config, prior, probs), centre)
    labelled = _case(5)
    cfg = load_config("stipple:smoke", ["prior.positioning=label"])
    points = np.argwhere(labelled.label == 1)
    assert np.array_equal(
        C.position(cfg, prior, probs, labelled.label), (points.min(0) + points.max(0)) // 2
    )
    with pytest.raises(ValueError, match="needs labelled cases"):
        C.position(cfg, prior, probs)


def test_refinement_moves_the_centre_onto_the_organ(config, monkeypatch):
    """A network that finds the organ when the prior is given and adds a distant false positive
    without it: the centroid is off, one refinement step lands on the organ's centre (the
    prior's own centroid offset removed), the next confirms it."""
    prior = _prior(config, seed=7) ** 4  # uneven mass: the centroid is off the window's centre
    shape, true = (32, 32, 24), np.array([15, 14, 11])
    organ = C.placed_prior(config, prior, true, shape)
    organ = np.where(organ > config.prior.floor, organ, 0.0)
    distractor = np.zeros(shape)
    distractor[2:6, 2:6, 18:22] = 1.0
    calls = []

    def network(config, nets, image, placed=None):
        calls.append(placed is None)
        return organ + distractor if placed is None else organ

    monkeypatch.setattr(C, "probabilities", network)
    image = np.zeros((*shape, 1), np.float32)
    coarse = C.position(config, prior, organ + distractor)
    assert np.abs(coarse - true).max() >= 2
    np.testing.assert_array_equal(C.locate(config, None, prior, image), true)
    assert calls == [True, False, False]  # coarse pass, one move, one confirmation
    cfg = load_config("stipple:smoke", ["prior.refine=0"])
    np.testing.assert_array_equal(C.locate(cfg, None, prior, image), coarse)


def test_pseudo_labels_are_the_most_confident_gamma_of_the_predicted_organ(config, state):
    state = state.replace(prior=jnp.asarray(_prior(config)))
    image = _case(6).image
    out = R.pseudo_labels(config, state.nets, _prior(config), image, 0.5)
    prob = out["prob"]
    organ = int((prob > 0.5).sum())
    k, k_bg = round(0.5 * organ), round(0.5 * (prob.size - organ))
    order = np.argsort(-prob.ravel(), kind="stable")
    np.testing.assert_array_equal(np.flatnonzero(out["label"].ravel()), np.sort(order[:k]))
    selected = np.sort(np.concatenate([order[:k], order[prob.size - k_bg :]]))
    np.testing.assert_array_equal(np.flatnonzero(out["weight"].ravel()), selected)
    np.testing.assert_array_equal(
        out["center"], C.locate(config, state.nets, _prior(config), image)
    )


# ---------------------------------------------------------------------------------------------
# Runs


def _metrics(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_rounds_add_pseudo_labels_and_resume_exactly(tmp_path):
    from jaxseg.train.experiment import run_experiment

    config = load_config(
        "stipple:smoke",
        ["train.steps=8", "train.checkpoint_every=2", "train.eval_every=0", "train.max_to_keep=10"],
    )
    full = tmp_path / "full"
    run_experiment(METHOD, config, full, progress=False)
    split = json.loads((full / "split.json").read_text())
    files = sorted((full / "pseudo" / "round_1").glob("*.npz"))
    assert [f.stem for f in files] == sorted(split["unlabelled"])
    for f in files:
        with np.load(f) as arrays:
            weight, label = arrays["weight"], arrays["label"]
        assert label.sum() > 0 and np.all(weight >= label) and weight.sum() > label.sum()
    before = [m["target_fraction"] for m in _metrics(full) if m["step"] <= 4]
    after = [m["target_fraction"] for m in _metrics(full) if m["step"] > 4]
    # Batches of 2 labelled + 2 unlabelled items: the unlabelled ones count after the round.
    assert before == [0.5] * 4 and min(after) > 0.5
    # Resume from step 2 (before the round): the round is redone and the losses repeat exactly.
    import shutil

    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    for step in (4, 6, 8):
        shutil.rmtree(resumed / "checkpoints" / str(step))
    (resumed / "metrics.jsonl").write_text(
        "".join(json.dumps(m) + "\n" for m in _metrics(full) if m["step"] <= 2)
    )
    run_experiment(METHOD, config, resumed, progress=False)
    for a, b in zip(_metrics(full), _metrics(resumed), strict=True):
        assert a["step"] == b["step"] and a["loss"] == b["loss"], (a, b)


def _jaxseg(*args, cwd):
    run = subprocess.run(
        [sys.executable, "-m", "jaxseg.cli", *args], cwd=cwd, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.mark.slow
def test_cli_train_evaluate_predict(tmp_path):
    import nibabel as nib

    workdir = tmp_path / "run"
    _jaxseg("train", "stipple:smoke", "--workdir", str(workdir), "--no-progress", cwd=tmp_path)
    for name in ("figures/prior.png", "figures/pseudo_round_1.png", "eval/metrics.json"):
        assert (workdir / name).is_file(), name
    first = json.loads((workdir / "eval" / "metrics.json").read_text())
    _jaxseg(
        "evaluate", "--workdir", str(workdir), "--output", str(tmp_path / "again"), cwd=tmp_path
    )
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["mean"]["dice"] == pytest.approx(first["mean"]["dice"], abs=1e-6)
    # predict on a test phantom written as NIfTI: the positioned prior's prediction, thresholded
    from jaxseg.data.synthetic import abdominal_ct_like

    run_config = json.loads((workdir / "config.json").read_text())
    syn = run_config["data"]["synthetic"]
    case = abdominal_ct_like(20_000, shape=tuple(syn["shape"]), spacing=tuple(syn["spacing"]))
    image = np.clip(case.image[..., 0], -160, 300)
    nib.save(nib.Nifti1Image(image, np.diag([*case.spacing, 1.0])), tmp_path / "ct.nii.gz")
    out = tmp_path / "seg.nii.gz"
    _jaxseg("predict", "--workdir", str(workdir), "--input", str(tmp_path / "ct.nii.gz"),
            "--output", str(out), cwd=tmp_path)  # fmt: skip
    seg = np.asarray(nib.load(out).dataobj)
    assert seg.shape == image.shape and set(np.unique(seg)) <= {0, 1}
    # The same input as the evaluation's first test case: the same segmentation.
    (scored,) = (c for c in first["cases"] if c["id"] == case.id)
    ref = case.label == 1
    dice = 2 * np.sum((seg == 1) & ref) / max(np.sum(seg == 1) + np.sum(ref), 1)
    assert dice == pytest.approx(scored["dice"], abs=1e-6)
