"""A training run killed with SIGKILL at two moments (before its first checkpoint, and just
after a checkpointed step's metrics are written, while its checkpoint is being written in the
background), or stopped by a disk that takes no more data, and started again with the same
command ends with the parameters and the ``metrics.jsonl`` of an uninterrupted run.

The full disk is a file-size limit (``RLIMIT_FSIZE``, with ``SIGXFSZ`` ignored): every write past
30 KB fails as it would on a full disk, so the run's small files (config, split, metrics) are
written and its checkpoints (1 MB) are not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxseg.methods import get_method
from jaxseg.train.config import load_config
from jaxseg.train.experiment import restore_state

pytestmark = pytest.mark.slow

ARGS = ["train", "supervised:smoke", "--no-progress", "--set", "train.steps=8"]
for item in ("train.checkpoint_every=2", "train.eval_every=0", "train.log_every=1"):
    ARGS += ["--set", item]
ARGS += ["--set", "data.synthetic.test=1"]


def _command(workdir):
    return [sys.executable, "-m", "jaxseg.cli", *ARGS, "--workdir", str(workdir)]


def _steps_logged(workdir) -> int:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.endswith("}")]
    return json.loads(lines[-1])["step"] if lines else 0


def _kill_after(workdir, step: int) -> None:
    proc = subprocess.Popen(_command(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while _steps_logged(workdir) < step and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _final(workdir):
    config = load_config("supervised:smoke", ["train.steps=8"])
    state, step = restore_state(get_method("supervised"), config, workdir)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return step, jax.device_get(state.nets), [(r["step"], r["loss"]) for r in records]


# Sets the limit in a fresh interpreter, then becomes the command (limits and ignored signals
# survive exec); a preexec_fn would run Python in a fork of this multithreaded process.
SMALL_FILES_ONLY = (
    "import os, resource, signal, sys; "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000)); "
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_sigkill_or_a_full_disk_then_the_same_command_ends_as_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_command(reference), check=True, capture_output=True)
    killed = tmp_path / "killed"
    for step in (1, 4):  # before the first checkpoint, and while step 4's is written
        _kill_after(killed, step)
    full = tmp_path / "full"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    argv = [sys.executable, "-c", SMALL_FILES_ONLY, *_command(full)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if not line.startswith("ERROR:absl:")]
    assert lines[-1].startswith("jaxseg train: saving step"), done.stderr[-2000:]
    assert str(full / "checkpoints") in lines[-1] and "File too large" in lines[-1]
    assert not [p for p in (full / "checkpoints").iterdir() if p.name.isdigit()]
    for workdir in (killed, full):
        done = subprocess.run(_command(workdir), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    step_a, nets_a, log_a = _final(reference)
    assert step_a == 8
    for workdir in (killed, full):
        step_b, nets_b, log_b = _final(workdir)
        assert step_b == 8 and log_a == log_b, workdir.name
        for x, y in zip(jax.tree.leaves(nets_a), jax.tree.leaves(nets_b), strict=True):
            np.testing.assert_array_equal(x, y)
