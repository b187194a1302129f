"""``jaxseg train / evaluate / predict`` end to end on tiny synthetic runs: files, resumption,
data parallelism, the multi-seed runner, PyTorch weights, and errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import nibabel as nib
import numpy as np
import pytest

from jaxseg.cli import main
from jaxseg.data import synthetic
from jaxseg.data.nifti import save_nifti
from jaxseg.data.preprocess import zscore
from jaxseg.methods import get_method
from jaxseg.train import read_metrics
from jaxseg.train.config import load_config
from jaxseg.train.experiment import restore_state

pytestmark = pytest.mark.slow  # end-to-end runs through the CLI

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "{}" / "configs" / "la.py") + ":smoke"
# Smoke runs: 32^3 phantoms, a 4-filter V-Net; short.
FAST = ["--set", "train.eval_every=0", "--set", "data.synthetic.test=1", "--no-progress"]


def train(method, workdir, steps, *extra):
    argv = ["train", CONFIG.format(method), "--workdir", str(workdir)]
    return main([*argv, "--set", f"train.steps={steps}", *extra])


@pytest.fixture(scope="module")
def sassnet_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sassnet")
    extra = ["--set", "train.eval_every=1", "--set", "train.checkpoint_every=1", "--no-progress"]
    assert train("sassnet", workdir, 2, *extra) == 0
    return workdir


def test_train_writes_the_run_directory(sassnet_run):
    config = json.loads((sassnet_run / "config.json").read_text())
    assert config["method"] == "sassnet" and config["train"]["steps"] == 2
    records = read_metrics(sassnet_run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert {"loss", "loss_adv", "loss_disc", "val/dice"} <= set(r)
        assert np.isfinite(r["loss"])
    assert sorted(os.listdir(sassnet_run / "checkpoints")) == ["1", "2"]
    result = json.loads((sassnet_run / "eval" / "metrics.json").read_text())
    assert [c["id"] for c in result["cases"]] == ["la_synth_20000", "la_synth_20001"]
    for key in ("dice", "jaccard", "hd95", "asd"):
        assert key in result["mean"] and key in result["std"]
        assert key in result["cases"][0]
    assert result["checkpoint"]["step"] in (1, 2) and result["method"] == "sassnet"
    assert (sassnet_run / "figures" / "curves.png").stat().st_size > 1000
    assert (sassnet_run / "eval" / "figures" / "dice.png").stat().st_size > 1000
    # Every validation keeps its metrics and figures of the validation predictions.
    for step in (1, 2):
        val = sassnet_run / "val" / f"{step:06d}"
        result = json.loads((val / "metrics.json").read_text())
        assert result["mean"]["dice"] == pytest.approx(records[step - 1]["val/dice"])
        assert (val / "figures" / "la_synth_10000.png").stat().st_size > 1000


def test_evaluate_reproduces_the_training_evaluation(sassnet_run, capsys):
    before = json.loads((sassnet_run / "eval" / "metrics.json").read_text())
    assert main(["evaluate", "--workdir", str(sassnet_run), "--no-progress"]) == 0
    after = json.loads((sassnet_run / "eval" / "metrics.json").read_text())
    assert [c["dice"] for c in after["cases"]] == pytest.approx(
        [c["dice"] for c in before["cases"]]
    )
    assert "test: dice" in capsys.readouterr().out


def test_evaluate_output_keeps_the_run_evaluation(sassnet_run, tmp_path):
    path = sassnet_run / "eval" / "metrics.json"
    before = path.read_bytes()
    out = tmp_path / "eval_lcc"
    argv = ["evaluate", "--workdir", str(sassnet_run), "--output", str(out), "--no-progress"]
    assert main([*argv, "--set", "eval.largest_component=True"]) == 0
    assert path.read_bytes() == before
    result = json.loads((out / "metrics.json").read_text())
    assert result["protocol"]["largest_component"] is True
    assert json.loads(before)["protocol"]["largest_component"] is False
    assert (out / "figures" / "dice.png").stat().st_size > 1000


def test_predict_writes_labels_probabilities_and_sdm_with_the_input_header(sassnet_run, tmp_path):
    case = synthetic.la_like(7, shape=(32, 32, 32), spacing=(2.2, 2.2, 2.2))
    affine = np.diag([2.2, 2.2, 2.2, 1.0])
    affine[:3, 3] = (10.0, -4.0, 3.0)
    image = save_nifti(tmp_path / "image.nii.gz", case.image[..., 0], affine)
    out = {k: tmp_path / f"{k}.nii.gz" for k in ("label", "prob", "sdm")}
    argv = ["predict", "--workdir", str(sassnet_run), "--input", str(image)]
    argv += ["--output", str(out["label"]), "--prob", str(out["prob"]), "--sdm", str(out["sdm"])]
    assert main(argv) == 0
    label, prob, sdm = (nib.load(out[k]) for k in ("label", "prob", "sdm"))
    for img in (label, prob, sdm):
        assert img.shape == (32, 32, 32)
        np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    label, prob, sdm = (np.asarray(x.dataobj) for x in (label, prob, sdm))
    assert set(np.unique(label)) <= {0, 1}
    np.testing.assert_array_equal(label, prob > 0.5)
    assert 0 <= prob.min() and prob.max() <= 1 and -1 <= sdm.min() and sdm.max() <= 1


def test_predict_a_folder_of_nnunet_cases_into_a_new_folder(sassnet_run, tmp_path, capsys):
    inputs = tmp_path / "imagesTs"
    inputs.mkdir()
    for i, seed in enumerate((7, 8)):
        case = synthetic.la_like(seed, shape=(32, 32, 32), spacing=(2.2, 2.2, 2.2))
        save_nifti(inputs / f"la_{i:03d}_0000.nii.gz", case.image[..., 0], np.diag([2.2] * 3 + [1]))
    out = tmp_path / "predictions" / "sassnet"
    argv = ["predict", "--workdir", str(sassnet_run), "-i", str(inputs), "-o", str(out)]
    assert main([*argv, "--tta", "--blend", "gaussian", "--batch-size", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["la_000.nii.gz", "la_001.nii.gz"]
    printed = capsys.readouterr().out
    assert "[1/2] la_000" in printed and "2 of 2 case(s) predicted" in printed
    # Mirroring is refused for a method on a fixed grid, before anything is read.
    run = tmp_path / "atlas"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(load_config("atlas_istn:smoke").to_dict()))
    argv = ["predict", "--workdir", str(run), "-i", str(inputs), "-o", str(out), "--tta"]
    assert main(argv) == 2
    assert "--tta is not available for atlas_istn" in capsys.readouterr().err


def test_predict_with_a_bad_input_keeps_the_existing_output(sassnet_run, tmp_path, capsys):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti file")
    output = tmp_path / "out.nii.gz"
    output.write_bytes(b"previous result")
    argv = ["predict", "--workdir", str(sassnet_run), "--input", str(bad), "--output", str(output)]
    assert main(argv) == 2
    assert "broken.nii.gz" in capsys.readouterr().err
    assert output.read_bytes() == b"previous result"


def final_params(method, workdir):
    config = load_config(CONFIG.format(method))
    state, step = restore_state(get_method(method), config, workdir)
    return step, jax.device_get(state)


def _numeric(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    """Stopped after 2 of 4 steps and restarted with the same command (and steps=4), the run
    ends with the parameters, optimizer states, RNG and losses of an uninterrupted 4-step run.

    The schedules are given in iterations here: as fractions of the run (the shipped configs)
    they would follow the first part's ``train.steps=2`` in the first two steps."""
    ckpt = ["--set", "train.checkpoint_every=2"]
    for item in ("optim.seg.decay_every=2", "optim.seg.decay_every_unit=iterations"):
        ckpt += ["--set", item]
    for item in ("loss.rampup_divisor=1", "loss.rampup_divisor_unit=iterations"):
        ckpt += ["--set", item]
    assert train("dtml", tmp_path / "a", 4, *FAST, *ckpt) == 0
    assert train("dtml", tmp_path / "b", 2, *FAST, *ckpt) == 0
    assert train("dtml", tmp_path / "b", 4, *FAST, *ckpt) == 0
    (step_a, a), (step_b, b) = (
        final_params("dtml", tmp_path / "a"),
        final_params("dtml", tmp_path / "b"),
    )
    assert step_a == step_b == 4
    a, b = (jax.tree.map(_numeric, s) for s in (a, b))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    losses = [
        [r["loss"] for r in read_metrics(d / "metrics.jsonl")]
        for d in (tmp_path / "a", tmp_path / "b")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 4


def test_four_devices_log_the_losses_of_one(tmp_path):
    """The same config on 4 simulated CPU devices (batch 2 + 2 sharded, state replicated).

    Only the order of the cross-device sums differs. In float32 that moved the losses by up to
    2e-4 relative by step 3 (a few ulps at step 1, amplified by Adam on the discriminator's tiny
    gradients and by the Dice gradient through training-mode batch norm), so the runs are made
    in float64, and the losses are held to 1e-11 (the arithmetic behind it: test_distributed.py;
    measured: 3.3e-16 at most)."""
    runs = {}
    for devices in (1, 4):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        env["JAX_ENABLE_X64"] = "1"
        argv = [sys.executable, "-m", "jaxseg.cli", "train", CONFIG.format("sassnet")]
        argv += ["--workdir", str(tmp_path / str(devices)), "--set", "train.steps=3", *FAST]
        argv += ["--set", "train.precision=float64", "--set", "data.synthetic.test=0"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"on {devices} cpu device(s)" in done.stdout
        runs[devices] = read_metrics(tmp_path / str(devices) / "metrics.jsonl")
    assert len(runs[1]) == len(runs[4]) == 3
    for one, four in zip(runs[1], runs[4], strict=True):
        for key in ("loss", "loss_dice", "loss_sdm", "loss_adv", "loss_disc"):
            np.testing.assert_allclose(four[key], one[key], rtol=1e-11, err_msg=key)


def test_a_run_without_test_cases_ends_without_evaluating(tmp_path, capsys):
    extra = ["--set", "train.eval_every=0", "--set", "data.synthetic.test=0", "--no-progress"]
    assert train("supervised", tmp_path, 1, *extra) == 0
    assert "test: no test cases, nothing evaluated" in capsys.readouterr().out
    assert os.listdir(tmp_path / "checkpoints") == ["1"] and not (tmp_path / "eval").exists()


def test_seeds_runner_reports_mean_and_std(tmp_path, capsys):
    assert train("supervised", tmp_path, 1, *FAST, "--seeds", "0,1") == 0
    summary = json.loads((tmp_path / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1]
    dice = [summary["per_seed"][s]["dice"] for s in ("0", "1")]
    for s in ("0", "1"):
        result = json.loads((tmp_path / f"seed_{s}" / "eval" / "metrics.json").read_text())
        assert summary["per_seed"][s]["dice"] == pytest.approx(result["mean"]["dice"])
    assert summary["mean"]["dice"] == pytest.approx(np.mean(dice))
    assert summary["std"]["dice"] == pytest.approx(np.std(dice))
    assert (tmp_path / "figures" / "seeds.png").stat().st_size > 1000
    assert "+-" in capsys.readouterr().out


def test_predict_with_reference_pytorch_weights(tmp_path):
    """A reference SASSNet/DTML V-Net state_dict (.pth) segments a NIfTI volume: the probability
    map equals the PyTorch network's sigmoid output on the same (z-scored) image."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "tests"))
    import torch_reference as ref

    model = ref.randomize_(ref.build("vnet"), seed=5)
    weights = tmp_path / "vnet.pth"
    torch.save(model.state_dict(), weights)
    case = synthetic.la_like(3, shape=(32, 32, 32), spacing=(2.2, 2.2, 2.2), normalize=False)
    image = save_nifti(tmp_path / "image.nii.gz", case.image[..., 0], np.diag([2.2] * 3 + [1.0]))
    out, prob = tmp_path / "label.nii.gz", tmp_path / "prob.nii.gz"
    argv = ["predict", "--weights", str(weights), "--config", CONFIG.format("sassnet")]
    argv += ["--input", str(image), "--output", str(out), "--prob", str(prob)]
    overrides = ["--set", "model.n_filters=16", "--set", "eval.patch=(32,32,32)"]
    overrides += ["--set", "eval.stride=(32,32,32)", "--set", "eval.batch_size=1"]
    assert main([*argv, *overrides]) == 0
    x = zscore(np.asarray(nib.load(image).dataobj, np.float32))[None, None]
    expected = ref.forward_outputs("vnet", model, x)["seg"][0, ..., 0]
    got = np.asarray(nib.load(prob).dataobj)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-expected)), atol=1e-4)

    # evaluate: the same weights on the config's test cases; Dice of PyTorch's thresholded output.
    workdir = tmp_path / "eval_run"
    argv = ["evaluate", "--weights", str(weights), "--config", CONFIG.format("sassnet")]
    assert main([*argv, "--workdir", str(workdir), *overrides, "--no-progress"]) == 0
    result = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert result["checkpoint"] == {"which": "weights", "source": str(weights)}
    config = load_config(CONFIG.format("sassnet"))
    for case, row in zip(
        synthetic.dataset("la_like", 2, seed=20_000, shape=(32,) * 3, spacing=(2.2,) * 3),
        result["cases"],
        strict=True,
    ):
        assert row["id"] == case.id
        logits = ref.forward_outputs("vnet", model, np.moveaxis(case.image, -1, 0)[None])["seg"]
        pred, ref_mask = logits[0, ..., 0] > 0, case.label == 1
        expected_dice = 2 * np.sum(pred & ref_mask) / (pred.sum() + ref_mask.sum())
        assert row["dice"] == pytest.approx(expected_dice, abs=1e-6)
    assert config.data.synthetic.test == 2


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "missing.py:smoke", "--workdir", "w"], "missing.py"),
        (["train", CONFIG.format("dtml"), "--workdir", "w", "--set", "train.stepz=3"], "stepz"),
        (["train", CONFIG.format("dtml"), "--workdir", "w", "--set", "train.steps"], "key=value"),
        (["evaluate", "--workdir", "not-a-run"], "config.json"),
        (["predict", "--input", "a.nii.gz", "--output", "b.nii.gz"], "--workdir"),
    ],
)
def test_bad_requests_exit_2_with_a_message(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_changed_config_is_refused_and_the_run_directory_is_untouched(tmp_path, capsys):
    assert train("supervised", tmp_path, 1, *FAST) == 0
    before = _tree_bytes(tmp_path)
    argv = ["train", CONFIG.format("sassnet"), "--workdir", str(tmp_path), *FAST]
    assert main([*argv, "--set", "train.steps=2"]) == 2
    err = capsys.readouterr().err
    assert "method" in err and str(tmp_path) in err
    assert train("supervised", tmp_path, 2, *FAST, "--set", "model.n_filters=8") == 2
    assert "model.n_filters" in capsys.readouterr().err
    assert _tree_bytes(tmp_path) == before
    # Only train.steps may differ: the run is extended.
    assert train("supervised", tmp_path, 2, *FAST) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


def test_best_checkpoint_is_the_one_of_the_best_validation_dice(tmp_path):
    """Three checkpoints saved with validation Dice 0.2, 0.9, 0.5: ``eval.checkpoint="best"``
    restores step 2 (not the last, 3), as a fresh process opening the run directory."""
    from jaxseg.train import Checkpointer
    from jaxseg.train.experiment import BEST_METRIC

    method = get_method("supervised")
    config = load_config(CONFIG.format("supervised"))
    state = jax.jit(lambda k: method.create_state(config, k))(jax.random.key(0))
    with Checkpointer(tmp_path / "checkpoints", best_metric=BEST_METRIC, max_to_keep=1) as ckpt:
        for step, dice in ((1, 0.2), (2, 0.9), (3, 0.5)):
            state = state.replace(step=jax.numpy.asarray(step, jax.numpy.int32))
            ckpt.save(step, state, metrics={BEST_METRIC: dice})
    best, step = restore_state(method, config, tmp_path, "best")
    assert step == 2 and int(best.step) == 2
    last, step = restore_state(method, config, tmp_path, "last")
    assert step == 3 and int(last.step) == 3


def test_a_key_added_since_the_run_counts_as_its_default(tmp_path):
    """A run directory of an older version lacks keys added since (e.g. train.precision): it
    equals the same config at the keys' defaults, and no other value."""
    from jaxseg.train.config import load_config
    from jaxseg.train.experiment import RunDirectoryError, check_run_directory

    config = load_config("supervised:smoke")
    stored = json.loads(json.dumps(config.to_dict()))
    del stored["train"]["precision"]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    check_run_directory(tmp_path, config)  # float32, the default: the same run
    config.train.precision = "float64"
    with pytest.raises(RunDirectoryError, match=r"train\.precision"):
        check_run_directory(tmp_path, config)
