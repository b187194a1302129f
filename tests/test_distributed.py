"""Data parallelism over several processes through ``jax.distributed``, on one machine.

Two processes on 127.0.0.1 with 2 CPU devices each (gloo collectives) train the SASSNet smoke
config, stop after 2 steps, resume to 4, and must log the losses of one process with 4 devices:
every process reads its slice of each global batch, so the batches are the same items with the
same augmentations, and the replicated state is updated identically.
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
ARGS += ["--set", "train.log_every=1"]
KEYS = ("loss", "loss_dice", "loss_sdm", "loss_adv", "loss_disc")


def _env(devices: int) -> dict[str, str]:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


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
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        outs.append(out)
    return outs


def test_two_processes_resume_and_log_the_losses_of_one(tmp_path):
    one = tmp_path / "one"
    done = subprocess.run(
        _command(one, 4), env=_env(4), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 4 cpu device(s)" in done.stdout

    two = tmp_path / "two"
    first = _two_processes(two, 2)
    assert "on 4 cpu device(s) in 2 processes" in first[0]
    assert first[1] == ""  # process 1 prints nothing and writes no file of its own
    assert [r["step"] for r in read_metrics(two / "metrics.jsonl")] == [1, 2]
    second = _two_processes(two, 4)
    assert "test: dice" in second[0] and second[1] == ""

    runs = [read_metrics(d / "metrics.jsonl") for d in (one, two)]
    assert [r["step"] for r in runs[1]] == [1, 2, 3, 4]
    for a, b in zip(*runs, strict=True):
        for key in KEYS:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, err_msg=f"{key} {a['step']}")
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["2", "4"]
    assert (two / "eval" / "metrics.json").exists()
