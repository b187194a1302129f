"""Schedules follow the run's length: learning-rate decays and loss ramps given as fractions of
the run are turned into iterations from the final ``train.steps``, and the loop logs them.

Expectations are the LA papers' schedule written out by hand: x0.1 after 2500 and 5000 of 6000
iterations, the ramp unit 150 of 6000 iterations, scaled to the run's length (and rounded to the
nearest iteration)."""

import numpy as np
import pytest

from jaxseg.cli import main
from jaxseg.methods import get_method
from jaxseg.train import read_metrics
from jaxseg.train.config import apply_overrides
from jaxseg.train.optim import learning_rate, schedule_steps

# (steps, {1-based iteration: learning rate}) by hand: a decay every 2500/6000 of the run.
LR_TABLE = [
    (6000, {1: 0.01, 2500: 0.01, 2501: 1e-3, 5000: 1e-3, 5001: 1e-4, 6000: 1e-4}),
    # 600: decay every 250 iterations.
    (600, {1: 0.01, 250: 0.01, 251: 1e-3, 500: 1e-3, 501: 1e-4, 600: 1e-4}),
    # 40: 16.7 -> every 17 iterations.
    (40, {17: 0.01, 18: 1e-3, 34: 1e-3, 35: 1e-4, 40: 1e-4}),
    # 6 (the smoke setting): 2.5 -> 2 (round half to even), decays after iterations 2 and 4.
    (6, {2: 0.01, 3: 1e-3, 5: 1e-4, 6: 1e-4}),
]


@pytest.mark.parametrize("name", ["supervised", "sassnet", "dtml"])
@pytest.mark.parametrize("setting", ["paper", "smoke"])
@pytest.mark.parametrize("steps,expected", LR_TABLE)
def test_learning_rate_follows_train_steps(name, setting, steps, expected):
    config = apply_overrides(get_method(name).default_config(setting), [f"train.steps={steps}"])
    for section in config.optim.values():
        if section.get("decay_every", 0):
            schedule = learning_rate(section, steps=int(config.train.steps))
            for iteration, lr in expected.items():
                # optax counts updates from 0: iteration i is update i - 1.
                assert float(schedule(iteration - 1)) == pytest.approx(lr, rel=1e-6), iteration


def test_the_smoke_setting_at_paper_length_decays_as_the_paper():
    """The reported bug: smoke with train.steps=6000 decayed every 2 steps (1e-25 by step 46)."""
    config = apply_overrides(get_method("sassnet").default_config("smoke"), ["train.steps=6000"])
    schedule = learning_rate(config.optim.seg, steps=6000)
    assert float(schedule(45)) == pytest.approx(0.01)
    assert float(schedule(2500)) == pytest.approx(1e-3)


def test_schedule_units():
    assert schedule_steps(2500, "iterations", steps=40) == 2500
    assert schedule_steps(150 / 6000, "run", steps=6000) == 150
    assert schedule_steps(150 / 6000, "run", steps=40) == 1
    assert schedule_steps(0.0, "run", steps=40) == 0
    for value, unit in ((1.5, "iterations"), (-1, "run"), (1, "epochs")):
        with pytest.raises(ValueError):
            schedule_steps(value, unit, steps=10)


def test_iterations_unit_is_not_rescaled():
    config = get_method("supervised").default_config("paper")
    apply_overrides(
        config,
        ["train.steps=40", "optim.seg.decay_every=10", "optim.seg.decay_every_unit=iterations"],
    )
    schedule = learning_rate(config.optim.seg, steps=40)
    assert [float(schedule(c)) for c in (9, 10, 39)] == pytest.approx([0.01, 1e-3, 1e-5])


@pytest.mark.slow
def test_cli_run_logs_the_scaled_learning_rate_and_ramp(tmp_path):
    """The acceptance run: sassnet smoke at 40 steps logs lr_seg and lr_disc every step, decayed
    after iterations 17 and 34, and the adversarial weight ramps over the whole run (unit
    150/6000 * 40 = 1 iteration, length 40 units)."""
    argv = ["train", "sassnet:smoke", "--workdir", str(tmp_path), "--no-progress"]
    argv += ["--set", "train.steps=40", "--set", "train.eval_every=0"]
    argv += ["--set", "train.checkpoint_every=40", "--set", "data.synthetic.test=1"]
    assert main(argv) == 0
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 41))
    expected = dict(LR_TABLE[2][1])
    for r in records:
        step = r["step"]
        lr = 0.01 if step <= 17 else 1e-3 if step <= 34 else 1e-4
        assert r["lr_seg"] == pytest.approx(lr, rel=1e-6), step
        assert r["lr_disc"] == pytest.approx(1e-4, rel=1e-6)
        ramp = float(np.exp(-5 * (1 - min(step - 1, 40) / 40) ** 2))
        assert r["adv_weight"] == pytest.approx(0.01 * ramp, rel=1e-5), step
    assert records[-1]["lr_seg"] == pytest.approx(expected[40])
    times = [r["wall_time"] for r in records]
    assert times == sorted(times) and times[0] > 0


def test_inverse_time_decay_reaches_end_lr_at_the_last_update():
    steps = 1001
    schedule = learning_rate({"name": "adam", "lr": 1e-4, "end_lr": 1e-5}, steps=steps)
    counts = np.array([0, 1, 500, steps - 1])
    lrs = np.array([float(schedule(c)) for c in counts])
    # Keras' InverseTimeDecay: lr0 / (1 + k t), i.e. 1 / lr grows linearly with the count.
    k = (1e-4 / 1e-5 - 1) / (steps - 1)
    np.testing.assert_allclose(lrs, 1e-4 / (1 + k * counts), rtol=1e-12)
    assert lrs[-1] == pytest.approx(1e-5, rel=1e-12)
    for bad, match in (
        ({"end_lr": 2e-4}, "end_lr"),
        ({"end_lr": 1e-5, "decay_every": 10}, "not both"),
    ):
        with pytest.raises(ValueError, match=match):
            learning_rate({"name": "adam", "lr": 1e-4, **bad}, steps=steps)
