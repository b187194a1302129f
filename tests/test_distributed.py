"""Data parallelism over several processes through ``jax.distributed``, on one machine.

Two processes on 127.0.0.1 with 2 CPU devices each (gloo collectives) train the SASSNet smoke
config for 2 steps, then resume to 4, and must log the losses of one process with 4 devices
trained for 4 steps at once: every process reads its slice of each global batch, so the batches
are the same items with the same augmentations, and the replicated state is updated alike.

Only the order of the cross-device sums differs (gloo between processes, XLA within one). In
float32 a few ulps at step 1 grow to about 2e-4 relative by step 3 (Adam normalises tiny
gradients of the discriminator; the Dice gradient through training-mode batch norm cancels most
digits at a random initialisation): an amplification of about 3e3. The runs are therefore made
in float64 (``train.precision=float64``), where the same amplification of its 1.1e-16 rounding
gives about 4e-13; the losses are held to 1e-11 (measured: 3.6e-16 at most).

The schedules are given in iterations, not as fractions of the run: in run units a run of 2
steps decays its learning rate at another step than one of 4, so the 2-step run resumed to 4
would not be the 4-step run.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxseg.train import read_metrics

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "sassnet:smoke", "--no-progress", "--set", "train.eval_every=0"]
ARGS += ["--set", "data.synthetic.test=1", "--set", "train.checkpoint_every=2"]
ARGS += ["--set", "train.log_every=1", "--set", "train.precision=float64"]
ARGS += ["--set", "optim.seg.decay_every_unit=iterations", "--set", "optim.seg.decay_every=2"]
ARGS += ["--set", "loss.rampup_divisor_unit=iterations", "--set", "loss.rampup_divisor=1"]
KEYS = ("loss", "loss_dice", "loss_sdm", "loss_adv", "loss_disc")


def _env(devices: int, cache: Path | None = None) -> dict[str, str]:
    """``devices`` CPU devices per process, and no persistent compilation cache but ``cache``
    (the tests' cache would hand the two-process run programs compiled for one process; a cache
    of the two-process runs alone lets the resumed pair skip the compilation of the first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    if cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
    return {**env, "JAX_ENABLE_X64": "1", "JAX_THREEFRY_PARTITIONABLE": "0"}


def _command(workdir: Path, steps: int) -> list[str]:
    argv = [sys.executable, "-m", "jaxseg.cli", *ARGS, "--workdir", str(workdir)]
    return [*argv, "--set", f"train.steps={steps}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(workdir: Path, steps: int) -> list[str]:
    """Run the command as processes 0 and 1 of 2; returns their stdout."""
    flags = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    procs = [
        subprocess.Popen(
            [*_command(workdir, steps), *flags, "--process-id", str(i)],
            env=_env(2, workdir.parent / "cache"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    done = [proc.communicate(timeout=600) for proc in procs]
    logs = "\n".join(f"process {i}: {err[-2000:]}" for i, (_, err) in enumerate(done))
    assert [proc.returncode for proc in procs] == [0, 0], logs
    return [out for out, _ in done]


def test_two_processes_log_the_losses_of_one_and_resume_alike(tmp_path):
    one = tmp_path / "one"
    done = subprocess.run(
        _command(one, 4), env=_env(4), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 4 cpu device(s)" in done.stdout

    two = tmp_path / "two"
    outs = _two_processes(two, 2)
    assert "on 4 cpu device(s) in 2 processes" in outs[0] and "test: dice" in outs[0]
    assert "jaxseg" not in outs[1] and "test:" not in outs[1]  # gloo's own lines aside
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["2"]
    assert (two / "eval" / "metrics.json").exists() and (two / "config.json").exists()
    outs = _two_processes(two, 4)
    assert "resuming from step 2 of 4" in outs[0], outs[0]

    runs = [read_metrics(d / "metrics.jsonl") for d in (one, two)]
    assert [r["step"] for r in runs[1]] == [1, 2, 3, 4]
    for a, b in zip(*runs, strict=True):
        for key in KEYS:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-11, err_msg=f"{key} {a['step']}")
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["2", "4"]
