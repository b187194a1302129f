"""Atlas-ISTN: transforms, atlas construction, refinement, training step, data preparation, the
Method record and a smoke run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.data.case import Case
from jaxseg.data.sources import Split, load_split
from jaxseg.errors import DataError
from jaxseg.geometry import compose, identity_grid, warp
from jaxseg.methods import atlas_istn as A
from jaxseg.metrics import inverse_consistency
from jaxseg.train.config import apply_overrides, load_config
from jaxseg.train.method import Method
from jaxseg.train.state import jit_step

REPO = Path(__file__).resolve().parents[1]
LETTER_B = REPO.parent / "shared" / "data" / "atlas-istn-synth2d"
CONFIG = REPO / "experiments" / "atlas_istn" / "configs" / "letter_b.py"


def _config(size=(16, 16), **overrides):
    c = A.default_config("smoke")
    c.data.size = size
    for key, value in overrides.items():
        apply_overrides(c, [f"{key}={value!r}"])
    return c


def _stn_out(batch, shape, *, velocity=None, translation=None, rotation=None, log_scale=None):
    d = len(shape)
    half = tuple(s // 2 for s in shape)
    zeros = jnp.zeros
    return {
        "velocity": zeros((batch, *half, d)) if velocity is None else velocity,
        "translation": zeros((batch, d)) if translation is None else translation,
        "rotation": zeros((batch, 1 if d == 2 else 3)) if rotation is None else rotation,
        "log_scale": zeros((batch, d)) if log_scale is None else log_scale,
    }


def _zero_velocity(params):
    """STN parameters whose velocity output is exactly 0 (last convolution zeroed)."""
    params = jax.tree.map(lambda x: x, params)
    params["conv25"] = jax.tree.map(jnp.zeros_like, params["conv25"])
    return params


# --------------------------------------------------------------------------------------------
# transforms


def test_fresh_stn_with_zero_velocity_is_the_identity():
    c = _config()
    state = A.create_state(c, jax.random.key(0))
    params = {"itn": state.nets["itn"].params, "stn": _zero_velocity(state.nets["stn"].params)}
    atlas = {"image": jnp.zeros((16, 16, 1)), "label": jnp.full((16, 16, 2), 0.5)}
    image = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
    out = jax.jit(lambda p, x: A.forward(c, p, x, atlas))(params, image)
    # The affine heads are zero-initialised: translation 0, rotation 0, log scale 0.
    np.testing.assert_allclose(out["matrix"], np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-7)
    for name in ("fwd", "inv", "nonrigid", "nonrigid_inv"):
        np.testing.assert_allclose(out[name], 0.0, atol=1e-6)
    np.testing.assert_allclose(out["atlas_label"], 0.5, atol=1e-6)


def test_affine_voxel_matrix_matches_the_normalised_grid_by_hand():
    shape = (16, 32)  # anisotropic grid: the conjugation matters
    c = _config(size=shape)
    t, r, s = np.array([0.2, -0.1]), np.array([0.3]), np.array([0.1, -0.2])
    out = A.transforms(
        c,
        _stn_out(1, shape, translation=t[None], rotation=r[None], log_scale=s[None]),
        shape,
        1.0,
    )
    # The reference: theta = S R T on coordinates n_i = 2 x_i / (S_i - 1) - 1 (array axis i).
    cos, sin = math.cos(r[0]), math.sin(r[0])
    theta = np.diag(np.exp(s)) @ np.array([[cos, -sin], [sin, cos]])
    size = np.array(shape, float) - 1
    x = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    n = 2 * x / size - 1
    mapped = (n + t) @ theta.T
    expected = (mapped + 1) / 2 * size - x
    np.testing.assert_allclose(out["fwd"][0], expected, atol=2e-4)


def test_forward_and_inverse_fields_are_inverse_consistent():
    shape = (32, 32)
    c = _config(size=shape)
    key = jax.random.key(3)
    coarse = jax.random.normal(key, (1, 4, 4, 2)) * 1.5
    velocity = jax.image.resize(coarse, (1, 16, 16, 2), "cubic")
    out = A.transforms(
        c,
        _stn_out(
            1,
            shape,
            velocity=velocity,
            translation=jnp.array([[0.05, -0.04]]),
            rotation=jnp.array([[0.1]]),
            log_scale=jnp.array([[0.05, -0.03]]),
        ),
        shape,
        1.0,
    )
    fwd, inv = out["fwd"][0], out["inv"][0]
    assert float(jnp.abs(fwd).max()) > 1.0  # a real deformation
    # Interior voxels: away from the border clamping of the fields.
    inner = (slice(6, -6), slice(6, -6))
    # Half-resolution integration and linear resampling leave errors of a few hundredths of a
    # voxel for displacements of several voxels.
    for residual in (compose(fwd, inv), compose(inv, fwd)):
        assert float(jnp.abs(residual[inner]).mean()) < 0.05
    assert float(jnp.abs(compose(fwd, inv)[inner]).max()) < 0.4
    mask = np.zeros(shape, int)
    mask[10:22, 8:20] = 1
    ic = inverse_consistency(fwd, inv, mask)
    assert ic["mice"] < 0.1
    assert ic["ic_dice"] > 0.97


def test_affine_is_switched_off_by_the_gate_and_for_svf_only():
    shape = (16, 16)
    stn = _stn_out(1, shape, translation=jnp.array([[0.3, 0.2]]))
    on = A.transforms(_config(), stn, shape, 1.0)
    off = A.transforms(_config(), stn, shape, 0.0)
    svf = A.transforms(_config(**{"stn.transform": "svf"}), stn, shape, 1.0)
    assert float(jnp.abs(on["fwd"]).max()) > 1.0
    np.testing.assert_allclose(off["fwd"], 0.0, atol=1e-6)
    np.testing.assert_allclose(svf["fwd"], 0.0, atol=1e-6)


def test_subject_to_subject_goes_through_the_atlas():
    shape = (32, 32)
    grid = identity_grid(shape)
    inv_i = 0.8 * jnp.sin(grid[..., ::-1] / 5.0)
    fwd_j = 0.6 * jnp.cos(grid / 7.0)
    image = jnp.sin(grid[..., 0] / 3.0) + jnp.cos(grid[..., 1] / 4.0)
    direct = warp(image, A.subject_to_subject(inv_i, fwd_j))
    twice = warp(warp(image, inv_i), fwd_j)
    np.testing.assert_allclose(direct[4:-4, 4:-4], twice[4:-4, 4:-4], atol=0.03)


def test_omega_is_the_papers_fade_in():
    c = _config()
    spe = A.steps_per_epoch(c)
    apply_overrides(c, ["loss.fade_epoch=25", "loss.fade_width=25.0"])
    for step in (0, spe - 1, spe, 30 * spe + 1):
        epoch = step // spe + 1
        expected = 1 / (1 + math.exp(-(epoch - 25) / 25))
        assert float(A.omega(c, jnp.asarray(step))) == pytest.approx(expected, rel=1e-6)
    apply_overrides(c, ["loss.fade_epoch=-1"])
    assert float(A.omega(c, jnp.asarray(0))) == 1.0


def test_steps_follow_epochs_data_and_batch():
    c = A.default_config("paper")
    assert c.train.steps == 300 * 100
    apply_overrides(c, ["train.epochs=7", "data.labelled=55"])
    assert c.train.steps == 7 * 5 and A.steps_per_epoch(c) == 5
    # The generated training set is the labelled set; whole images in batches of 10.
    assert c.data.synthetic.train == 55 and c.data.synthetic.test == c.data.test
    assert tuple(c.data.patch) == tuple(c.data.size) and c.data.labelled_batch == 10
    assert (c.data.unlabelled, c.data.val) == (0, 0)
    apply_overrides(c, ["data.labelled=-1"])
    with pytest.raises(ValueError, match=r"data\.labelled"):
        A.steps_per_epoch(c)


def test_learning_rate_halves_every_decay_epochs_in_whole_epochs():
    c = _config(**{"train.decay_epochs": 4})
    spe = A.steps_per_epoch(c)
    lr = A.learning_rate(c)
    # constant within an epoch, 0.5 ** (1/4) per epoch, half after 4 epochs
    assert float(lr(0)) == pytest.approx(1e-3) and float(lr(spe - 1)) == pytest.approx(1e-3)
    assert float(lr(spe)) == pytest.approx(1e-3 * 0.5**0.25, rel=1e-6)
    assert float(lr(4 * spe)) == pytest.approx(0.5e-3, rel=1e-6)


# --------------------------------------------------------------------------------------------
# atlas construction


def test_atlas_update_is_the_ema_of_the_warped_cases_by_hand():
    """Eq. 15-16 with a known transform: a translation of one voxel along axis 0."""
    shape = (16, 16)
    c = _config(size=shape)
    state = A.create_state(c, jax.random.key(0))
    stn = _zero_velocity(state.nets["stn"].params)
    # translation head: tanh(bias) = t with t * (16 - 1) / 2 = 1 voxel along axis 0.
    bias = np.array([math.atanh(2 / 15), 0.0], np.float32)
    stn["translation"] = {"kernel": jnp.zeros_like(stn["translation"]["kernel"]), "bias": bias}
    params = {"itn": state.nets["itn"].params, "stn": stn}
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, *shape, 1)).astype(np.float32)
    labels = (rng.random((5, *shape)) > 0.6).astype(np.int32)
    atlas = {
        "image": jnp.asarray(rng.normal(size=(*shape, 1)), jnp.float32),
        "label": jnp.asarray(rng.random((*shape, 2)), jnp.float32),
    }
    eta = 0.25
    new = A.update_atlas(c, params, atlas, images, labels, rate=eta)

    # inv maps subject to atlas: warp(x, inv)(p) = x(p - e_0), clamped at the border.
    def shifted(x):
        return np.concatenate([x[:, :1], x[:, :-1]], axis=1)

    one_hot = (labels[..., None] == np.arange(2)).astype(np.float32)
    expected_image = (1 - eta) * np.asarray(atlas["image"]) + eta * shifted(images).mean(0)
    expected_label = (1 - eta) * np.asarray(atlas["label"]) + eta * shifted(one_hot).mean(0)
    np.testing.assert_allclose(new["image"], expected_image, atol=1e-5)
    np.testing.assert_allclose(new["label"], expected_label, atol=1e-5)


# --------------------------------------------------------------------------------------------
# training step and refinement


def _batch(c, n=4, seed=0):
    size = tuple(c.data.size)
    rng = np.random.default_rng(seed)
    label = np.zeros((n, *size), np.int32)
    label[:, 4:12, 5:11] = 1
    image = (label[..., None] + 0.1 * rng.normal(size=(n, *size, 1))).astype(np.float32)
    return {"image": image, "label": label}


def _with_atlas(c, state, batch):
    atlas = A.initial_atlas(c, batch["image"], batch["label"])
    return state.replace(atlas=jax.tree.map(jnp.asarray, atlas))


@pytest.mark.parametrize("variant", ["istn", "vml"])
def test_train_step_moves_the_networks_and_traces_once(variant):
    c = _config(**{"model.variant": variant})
    batch = _batch(c)
    state = _with_atlas(c, A.create_state(c, jax.random.key(0)), batch)
    before = jax.device_get(state.nets)
    chex.clear_trace_counter()
    step = jit_step(chex.assert_max_traces(A.make_train_step(c), n=1))
    for i in range(2):
        state, metrics = step(state, batch, jax.random.key(i))
    for name in ("loss", "loss_itn", "loss_a2s", "loss_s2a", "loss_reg"):
        assert np.isfinite(float(metrics[name])), name
    # the learning rate of the update just taken (the second step's, still the first epoch's)
    assert float(metrics["lr"]) == pytest.approx(float(A.learning_rate(c)(1)))
    moved = {
        name: max(
            float(np.abs(a - b).max())
            for a, b in zip(
                jax.tree.leaves(before[name].params), jax.tree.leaves(state.nets[name].params)
            )
        )
        for name in ("itn", "stn")
    }
    assert moved["stn"] > 0
    if variant == "istn":
        assert moved["itn"] > 0
    else:  # VML: no ITN loss and the STN sees the images, so the ITN gets no gradient
        assert moved["itn"] == 0
    assert int(state.step) == 2


def test_refinement_lowers_its_loss_and_returns_only_stn_weights():
    c = _config(**{"refine.steps": 15, "refine.lr": 1e-2})
    size = tuple(c.data.size)
    state = A.create_state(c, jax.random.key(0))
    atlas_label = np.zeros((*size, 2), np.float32)
    atlas_label[..., 0] = 1
    atlas_label[3:10, 3:10] = (0, 1)
    atlas = {"image": jnp.asarray(atlas_label[..., 1:]), "label": jnp.asarray(atlas_label)}
    target = np.roll(atlas_label, (3, 2), axis=(0, 1))[None]  # the "ITN output": a moved square
    image = jnp.asarray(target[..., 1:])
    refine = A.make_refine(c)
    stn = state.nets["stn"].params
    refined, losses = refine(stn, image, jnp.asarray(target), atlas)
    losses = np.asarray(losses)
    assert losses.shape == (1, 16)
    assert losses[0, -1] < 0.8 * losses[0, 0]
    assert jax.tree.structure(refined) == jax.tree.structure(jax.tree.map(lambda x: x[None], stn))
    assert any(
        float(np.abs(a[0] - b).max()) > 0
        for a, b in zip(jax.tree.leaves(refined), jax.tree.leaves(stn))
    )


# --------------------------------------------------------------------------------------------
# data: the engine loads the split, the method prepares each case


@pytest.mark.skipif(not LETTER_B.is_dir(), reason="released letter-B data not present")
def test_released_letter_b_cases_are_resampled_and_normalised():
    from jaxseg.data.png2d import load_png_case, png_list_cases

    c = A.default_config("paper")
    (files,) = png_list_cases(
        LETTER_B, LETTER_B / "test.corrupt.csv", LETTER_B / "test.corrupt.seg.csv"
    )[:1]
    case = A.METHOD.prepare_case(c, load_png_case(files.image, files.label, case_id=files.id))
    assert case.id == "B1001" and case.image.shape == (64, 64, 1)
    assert case.spacing == pytest.approx((2.0, 2.0))  # 128 px of 1 mm on 64 px
    assert abs(float(case.image.mean())) < 1e-4
    assert float(case.image.std()) == pytest.approx(1, 1e-3)
    assert set(np.unique(case.label)) == {0, 1}


def _split_or_skip(data):
    try:
        return load_split(data)
    except NotImplementedError:
        pytest.skip("jaxseg.data.sources.load_split is not implemented yet")


@pytest.mark.skipif(not LETTER_B.is_dir(), reason="released letter-B data not present")
def test_letter_b_config_reads_the_released_png_set():
    c = A.default_config("smoke")
    apply_overrides(c, ["data.source=png2d", f"data.root={LETTER_B}"])
    split = _split_or_skip(c.data)
    assert len(split.labelled) == c.data.labelled and not split.unlabelled and not split.val
    assert list(split.test_sets) == ["clean", "corrupt"]
    assert all(len(cases) == c.data.test for cases in split.test_sets.values())


@pytest.mark.parametrize("family", ["letter_b", "cardiac_like"])
def test_generated_split_fits_the_method(family):
    c = A.default_config("smoke", data=family)
    split = _split_or_skip(c.data)
    assert len(split.labelled) == c.data.labelled
    names = ["clean", "corrupt"] if family == "letter_b" else ["test"]
    assert list(split.test_sets) == names
    case = A.METHOD.prepare_case(c, split.test_sets[names[0]][0])
    assert case.image.shape == (*c.data.size, 1)
    assert int(case.label.max()) < c.data.num_classes


def _case(shape, *, label=True, channels=1, value=1):
    image = np.random.default_rng(0).normal(size=(*shape, channels)).astype(np.float32)
    mask = np.zeros(shape, np.int32)
    mask[(slice(2, -2),) * len(shape)] = value
    return Case(id="c", image=image, label=mask if label else None, source="c.nii.gz")


def test_bad_cases_and_settings_name_the_problem():
    c = _config(size=(16, 16))
    assert A.prepare_case(c, _case((20, 24))).image.shape == (16, 16, 1)
    for case, match in (
        (_case((16, 16), label=False), "labelled"),
        (_case((16, 16, 8)), "3D case for a 2D"),
        (_case((16, 16), channels=2), "one image channel"),
        (_case((16, 16), value=2), "num_classes"),
    ):
        with pytest.raises(DataError, match=match) as err:
            A.prepare_case(c, case)
        assert "c.nii.gz" in str(err.value)
    with pytest.raises(ValueError, match=r"stn\.transform"):
        A.create_state(_config(**{"stn.transform": "bspline"}), jax.random.key(0))
    with pytest.raises(ValueError, match=r"data\.labelled"):
        A.create_state(_config(**{"data.labelled": -1}), jax.random.key(0))


def test_nifti_case_is_resampled_to_the_config_size(tmp_path):
    import nibabel as nib

    from jaxseg.data.nifti import load_case

    label = np.zeros((40, 40, 24), np.uint8)
    label[10:30, 12:28, 6:18] = 1
    label[15:25, 15:25, 8:16] = 2
    image = (label + np.random.default_rng(0).normal(size=label.shape)).astype(np.float32)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "case0.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "case0_label.nii.gz")
    raw = load_case(tmp_path / "case0.nii.gz", tmp_path / "case0_label.nii.gz", case_id="case0")
    c = A.default_config("smoke", data="cardiac_like")
    apply_overrides(c, ["data.source=nifti", "data.num_classes=3", "data.size=(32, 32, 16)"])
    case = A.prepare_case(c, raw)
    assert case.id == "case0" and case.image.shape == (32, 32, 16, 1)
    assert case.spacing == pytest.approx((1.25, 1.25, 3.0))
    assert set(np.unique(case.label)) == {0, 1, 2}
    apply_overrides(c, ["data.num_classes=2"])
    with pytest.raises(DataError, match="num_classes"):
        A.prepare_case(c, raw)


def test_prepare_sets_the_initial_atlas_and_updates_it_every_epoch(tmp_path):
    c = _config(size=(16, 16), **{"atlas.rate": 0.5})
    batch = _batch(c, n=8)
    cases = [
        Case(id=f"c{i}", image=x, label=y)
        for i, (x, y) in enumerate(zip(batch["image"], batch["label"]))
    ]
    split = Split(labelled=cases, unlabelled=[], val=[], test_sets={})
    state, hooks = A.METHOD.prepare(c, A.create_state(c, jax.random.key(0)), split, tmp_path)
    images, labels = np.stack([x.image for x in cases]), np.stack([x.label for x in cases])
    initial = A.initial_atlas(c, images, labels)
    np.testing.assert_allclose(state.atlas["image"], initial["image"], atol=1e-6)
    np.testing.assert_allclose(state.atlas["label"].sum(-1), 1.0, atol=1e-6)
    (hook,) = hooks
    assert hook.every == A.steps_per_epoch(c) == 2
    updated = hook.fn(state, hook.every)
    assert float(np.abs(updated.atlas["image"] - state.atlas["image"]).max()) > 0
    for name in ("atlas/atlas_initial_image.nii.gz", "atlas/atlas_label.nii.gz"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "figures" / "atlas.png").is_file()
    # the epoch length was computed from data.labelled: a split of another size is refused
    short = Split(labelled=cases[:5], unlabelled=[], val=[], test_sets={})
    with pytest.raises(ValueError, match=r"data\.labelled"):
        A.prepare(c, state, short, tmp_path)


def test_method_record():
    m = A.METHOD
    assert isinstance(m, Method) and m.name == "atlas_istn"
    assert m.settings == A.SETTINGS and {"paper", "cpu", "smoke"} <= set(m.settings)
    assert (m.create_state, m.make_train_step, m.predict) == (
        A.create_state,
        A.make_train_step,
        A.predict,
    )
    assert (m.prepare_case, m.prepare, m.evaluate) == (A.prepare_case, A.prepare, A.evaluate)
    for setting in m.settings:
        c = m.default_config(setting)
        assert c.method == "atlas_istn"
        assert c.train.steps == c.train.epochs * A.steps_per_epoch(c)


# --------------------------------------------------------------------------------------------
# a smoke run through the CLI


def _jaxseg(*args, cwd):
    run = subprocess.run(
        [sys.executable, "-m", "jaxseg.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.mark.slow
def test_smoke_train_evaluate_refine(tmp_path):
    workdir = tmp_path / "run"
    _jaxseg("train", f"{CONFIG}:smoke", "--workdir", str(workdir), "--no-progress", cwd=tmp_path)
    for name in (
        "config.json",
        "metrics.jsonl",
        "atlas/atlas_initial_image.nii.gz",
        "atlas/atlas_label.nii.gz",
        "figures/atlas.png",
        "eval/metrics.json",
        "eval/figures/clean_predictions.png",
        "eval/figures/corrupt_predictions.png",
        "eval/figures/summary.png",
    ):
        assert (workdir / name).is_file(), name
    first = _strict_json(workdir / "eval" / "metrics.json")
    for test_set in ("clean", "corrupt"):
        entry = first[test_set]
        for output in ("itn", "one_pass", "refine"):
            assert set(entry[output]["mean"]) == {"dice", "assd", "hausdorff", "hd95"}
            assert len(entry[output]["cases"]) == 4
            assert 0 <= entry[output]["mean"]["dice"] <= 1
        assert set(entry["inverse_consistency"]) == {"ic_dice", "mice"}
        assert entry["refine_loss"]["after"] <= entry["refine_loss"]["before"]
    # The atlas is part of the checkpoint: the restored one is the one written last.
    import nibabel as nib

    config = load_config(f"{CONFIG}:smoke")
    from jaxseg.train.experiment import restore_state

    state, step = restore_state(A.METHOD, config, workdir)
    assert step == config.train.steps
    saved = np.asarray(nib.load(workdir / "atlas" / "atlas_image.nii.gz").dataobj)[:, :, 0]
    np.testing.assert_allclose(np.asarray(state.atlas["image"])[..., 0], saved, atol=1e-6)
    initial = np.asarray(nib.load(workdir / "atlas" / "atlas_initial_image.nii.gz").dataobj)
    assert float(np.abs(saved - initial[:, :, 0]).max()) > 0  # the atlas was updated
    # evaluate reproduces the results of the run
    _jaxseg("evaluate", "--workdir", str(workdir), cwd=tmp_path)
    again = _strict_json(workdir / "eval" / "metrics.json")
    for output in ("itn", "one_pass", "refine"):
        assert again["clean"][output]["mean"]["dice"] == pytest.approx(
            first["clean"][output]["mean"]["dice"], abs=1e-6
        )
    _predict_an_image_of_another_size(workdir, state, config, tmp_path)


def _predict_an_image_of_another_size(workdir, state, config, tmp_path):
    """jaxseg predict on a 2D image stored as a NIfTI slice (96x128x1 at 0.5 mm, another grid
    than the model's): each output comes back on the input's grid and header. The ITN output is
    checked against an independent computation: scipy's zoom to the model's grid (centres aligned,
    ``grid_mode``), NumPy's z-score, the method's plain ``predict`` (the ITN alone, not the
    Atlas-ISTN forward pass), scipy's zoom back and the argmax."""
    import nibabel as nib
    from scipy import ndimage

    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.normal(size=(96, 128)), 6).astype(np.float32)
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    affine[:3, 3] = (10.0, -4.0, 2.0)
    nib.save(nib.Nifti1Image(image[:, :, None], affine), tmp_path / "slice.nii.gz")
    labels = {}
    for output in A.PREDICT_OUTPUTS:
        seg = tmp_path / f"seg_{output}.nii.gz"
        args = ["predict", "--workdir", str(workdir), "-i", str(tmp_path / "slice.nii.gz")]
        args += ["--prob", str(tmp_path / "prob_itn.nii.gz")] if output == "itn" else []
        _jaxseg(*args, "-o", str(seg), "--set", f"eval.predict_output={output}", cwd=tmp_path)
        written = nib.load(seg)
        assert written.shape == (96, 128, 1)
        np.testing.assert_allclose(written.affine, affine)
        labels[output] = np.asarray(written.dataobj)[:, :, 0]
        assert set(np.unique(labels[output])) <= {0, 1}

    def zoom(x, factors):
        return ndimage.zoom(x, factors, order=1, grid_mode=True, mode="nearest")

    size = tuple(config.data.size)
    small = zoom(image, (size[0] / 96, size[1] / 128))
    small = (small - small.mean()) / small.std()
    scores = np.asarray(A.predict(config, state.nets, jnp.asarray(small[None, ..., None]))["prob"])
    up = (96 / size[0], 128 / size[1])
    back = np.stack([zoom(scores[0, ..., k], up) for k in range(2)], axis=-1)
    # The class scores are compared, not only their argmax: a briefly trained network may call
    # the whole image background, and then labels alone would agree trivially.
    assert back[..., 1].std() > 1e-3
    prob = np.asarray(nib.load(tmp_path / "prob_itn.nii.gz").dataobj, np.float64)
    prob = prob.reshape(96, 128, -1)
    np.testing.assert_allclose(prob, back[..., -prob.shape[-1] :], atol=2e-3)
    assert np.mean(labels["itn"] == np.argmax(back, axis=-1)) > 0.999


def _strict_json(path):
    """The JSON of ``path``, refusing NaN and Infinity (not JSON; undefined values are null)."""

    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_evaluate_writes_undefined_distances_as_null(tmp_path):
    config = _config(size=(16, 16))
    config.refine.steps = 2
    config.eval.update(num_figures=1, refine_lams=())
    yy, xx = np.mgrid[:16, :16]
    disc = ((yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 16).astype(np.int32)
    state = A.create_state(config, jax.random.key(0))
    atlas = {"image": disc[..., None].astype(np.float32), "label": np.eye(2)[disc]}
    state = state.replace(atlas=jax.tree.map(jnp.asarray, atlas))
    image = np.random.default_rng(0).standard_normal((16, 16, 1)).astype(np.float32)
    empty = Case(id="empty", image=image, label=np.zeros((16, 16), np.int32), spacing=(1.0, 1.0))
    result = A.evaluate(config, state, {"clean": [empty]}, out_dir=tmp_path)
    # A case without foreground has no surface distances: NaN in the result, null in the file.
    assert math.isnan(result["clean"]["itn"]["cases"][0]["hausdorff"])
    written = _strict_json(tmp_path / "metrics.json")
    for output in ("itn", "one_pass", "refine"):
        assert written["clean"][output]["cases"][0]["hausdorff"] is None
        assert written["clean"][output]["mean"]["hausdorff"] is None
    assert (tmp_path / "figures" / "clean_predictions.png").is_file()
    assert (tmp_path / "figures" / "summary.png").is_file()
