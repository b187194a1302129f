"""Tests of jaxseg.train: state, jitted steps, Orbax checkpoints, the loop and exact resumption."""

import functools
import json
import os
import re
import shutil
import struct

import chex
import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding

from jaxseg.train import (
    Checkpointer,
    CheckpointError,
    Hook,
    NetState,
    TrainState,
    create_net_state,
    create_train_state,
    device_put_batch,
    jit_step,
    make_mesh,
    plot_curves,
    read_metrics,
    step_key,
    train,
)


class TinyNet(nn.Module):
    """Two convolutions with BatchNorm and dropout: (B, 8, 8, 1) -> logits (B, 8, 8, 2)."""

    @nn.compact
    def __call__(self, x, *, train):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.Dropout(0.3, deterministic=not train)(x)
        return {"logits": nn.Conv(2, (1, 1))(x)}


MODEL = TinyNet()
OPTIMIZER = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 20))
BATCH = 4


def make_records(n=10):
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        image = rng.normal(size=(8, 8, 1)).astype(np.float32)
        label = (image[..., 0] > 0.3).astype(np.int32)
        records.append({"image": image, "label": label, "labelled": True, "id": f"case{i}"})
    return records


def make_iterator():
    ds = grain.MapDataset.source(make_records()).seed(0).shuffle().repeat(None).batch(BATCH)
    return iter(ds.to_iter_dataset())


@functools.cache
def initial_state():
    net = create_net_state(
        MODEL, OPTIMIZER, jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False
    )
    return create_train_state({"seg": net}, 0)


def make_state():
    """A fresh copy of the initial state (the loop donates the state it is given)."""
    return jax.tree.map(jnp.copy, initial_state())


def step_fn(state, batch, key, *, counter=None):
    if counter is not None:
        counter.append(1)  # runs only while tracing
    net = state.nets["seg"]

    def loss_fn(params):
        out, updates = MODEL.apply(
            {"params": params, "batch_stats": net.batch_stats},
            batch["image"],
            train=True,
            rngs={"dropout": key},
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(out["logits"], batch["label"])
        return loss.mean(), updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(net.params)
    net = net.apply_gradients(grads, OPTIMIZER, batch_stats=batch_stats)
    return state.replace(nets={"seg": net}), {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def run(workdir, num_steps, **kwargs):
    kwargs = {"checkpoint_every": 3, "log_every": 1, **kwargs}
    state = train(
        make_state(), step_fn, make_iterator(), num_steps=num_steps, workdir=workdir, **kwargs
    )
    return jax.device_get(state)


def assert_states_equal(a, b):
    assert int(a.step) == int(b.step)
    np.testing.assert_array_equal(jax.random.key_data(a.rng), jax.random.key_data(b.rng))
    for name, x, y in zip(
        [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(a.nets)],
        jax.tree.leaves(a.nets),
        jax.tree.leaves(b.nets),
    ):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6, err_msg=name)
    assert jax.tree.structure(a.nets) == jax.tree.structure(b.nets)


def test_exact_resume(tmp_path):
    a = run(tmp_path / "a", 10)
    b6 = run(tmp_path / "b", 6)
    assert int(b6.step) == 6
    steps_on_disk = sorted(
        int(p) for p in os.listdir(tmp_path / "b" / "checkpoints") if p.isdigit()
    )
    assert 6 in steps_on_disk
    b = run(tmp_path / "b", 10)  # a fresh call with the same arguments resumes at step 6
    assert_states_equal(a, b)
    assert b.nets["seg"].batch_stats  # BatchNorm statistics exist and were compared
    ma = read_metrics(tmp_path / "a" / "metrics.jsonl")
    mb = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in mb] == list(range(1, 11))
    for ra, rb in zip(ma, mb, strict=True):
        assert ra.keys() == rb.keys() == {"step", "loss", "grad_norm", "wall_time"}
        np.testing.assert_allclose(rb["loss"], ra["loss"], rtol=1e-6)
        np.testing.assert_allclose(rb["grad_norm"], ra["grad_norm"], rtol=1e-5)
    # The wall time of the resumed run continues from its step-6 record: it never goes back.
    times = [r["wall_time"] for r in mb]
    assert times == sorted(times) and times[0] > 0
    # training changed the parameters
    assert not np.allclose(
        a.nets["seg"].params["Conv_0"]["kernel"],
        make_state().nets["seg"].params["Conv_0"]["kernel"],
    )


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    run(tmp_path, 7, checkpoint_every=5)  # checkpoints at 5 and 7 (the last step)
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [5, 7]
    shutil.rmtree(tmp_path / "checkpoints" / "7")  # as if the run died after logging step 7
    final = run(tmp_path, 8, checkpoint_every=5)
    assert int(final.step) == 8
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(1, 9))


def test_step_traces_once_across_runs_and_resume(tmp_path):
    counter = []
    counted_step = functools.partial(step_fn, counter=counter)
    for num_steps in (4, 9):  # the second call resumes from the checkpoint of step 4
        state = train(
            make_state(),
            counted_step,
            make_iterator(),
            num_steps=num_steps,
            workdir=tmp_path,
            checkpoint_every=100,
            log_every=2,
        )
    assert len(counter) == 1
    assert int(state.step) == 9
    jitted = jit_step(counted_step)  # the cached jitted step: more calls, no new trace
    batch = {k: v for k, v in next(make_iterator()).items() if k != "id"}
    state, metrics = jitted(state, batch, step_key(state))
    assert len(counter) == 1
    assert int(state.step) == 10
    assert set(metrics) == {"loss", "grad_norm"}


def test_jit_step_with_chex_max_traces():
    def scale_step(state, batch, key):
        net = state.nets["w"]
        params = net.params * jnp.mean(batch["x"]) + jax.random.uniform(key)
        return state.replace(nets={"w": net.replace(params=params)}), {"sum": params.sum()}

    jitted = jit_step(chex.assert_max_traces(scale_step, n=1))
    state = create_train_state({"w": NetState(jnp.ones(3), {}, ())}, 0)
    for _ in range(5):
        state, metrics = jitted(state, {"x": np.ones(4, np.float32)}, step_key(state))
    assert int(state.step) == 5 and set(metrics) == {"sum"}
    with pytest.raises(AssertionError):  # a retrace (another batch shape) is caught
        jitted(state, {"x": np.ones(2, np.float32)}, step_key(state))


def test_step_key_is_fold_in_of_step():
    state = make_state()
    key = step_key(state.replace(step=jnp.int32(5)))
    expected = jax.random.fold_in(jax.random.key(0), 5)
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(expected))


def test_state_is_a_pytree_with_batch_stats_and_opt_state():
    state = make_state()
    assert isinstance(state, TrainState)
    assert state.step.dtype == jnp.int32 and state.step.shape == ()
    assert jnp.issubdtype(state.rng.dtype, jax.dtypes.prng_key)
    net = state.nets["seg"]
    assert "BatchNorm_0" in net.batch_stats
    assert jax.tree.structure(net.opt_state) == jax.tree.structure(OPTIMIZER.init(net.params))
    # abstract shapes go through eval_shape (the target of a restore)
    abstract = jax.eval_shape(make_state)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)


def small_state(value):
    return {"w": jnp.full((3,), value, jnp.float32), "step": jnp.int32(value)}


def test_checkpointer_keeps_last_k_and_best(tmp_path):
    dice = {1: 0.5, 2: 0.9, 3: 0.6, 4: 0.7, 5: 0.65}
    with Checkpointer(tmp_path, max_to_keep=2, best_metric="val/dice") as ckpt:
        for step, d in dice.items():
            ckpt.save(step, small_state(step), data_state={"pos": step}, metrics={"val/dice": d})
        ckpt.wait()
        assert ckpt.all_steps() == [2, 4, 5]
        assert ckpt.best_step() == 2
    assert sorted(p for p in os.listdir(tmp_path) if p.isdigit()) == ["2", "4", "5"]
    with Checkpointer(tmp_path, max_to_keep=2, best_metric="val/dice") as ckpt:
        state, data = ckpt.restore(2, target_state=small_state(0))
        assert data == {"pos": 2}
        np.testing.assert_array_equal(state["w"], np.full(3, 2.0))
        state, data = ckpt.restore(target_state=jax.eval_shape(lambda: small_state(0)))
        assert int(state["step"]) == 5 and data == {"pos": 5}


def test_checkpointer_min_mode_and_without_metric(tmp_path):
    with Checkpointer(tmp_path / "min", max_to_keep=1, best_metric="loss", best_mode="min") as c:
        for step, loss in [(1, 0.1), (2, 0.5), (3, 0.4)]:
            c.save(step, small_state(step), metrics={"loss": loss})
        c.wait()
        assert c.all_steps() == [1, 3]
    with Checkpointer(tmp_path / "plain", max_to_keep=2) as c:
        for step in range(1, 5):
            c.save(step, small_state(step))
        c.wait()
        assert c.all_steps() == [3, 4] and c.latest_step() == 4


def test_restore_missing_or_empty_directory_raises(tmp_path):
    with Checkpointer(tmp_path / "empty") as ckpt:
        assert ckpt.latest_step() is None
        with pytest.raises(CheckpointError, match=r"no checkpoint found in .*empty"):
            ckpt.restore(target_state=small_state(0))
    with Checkpointer(tmp_path / "one") as ckpt:
        ckpt.save(1, small_state(1))
        with pytest.raises(CheckpointError, match="step 7"):
            ckpt.restore(7, target_state=small_state(0))


def test_corrupt_checkpoint_raises_and_leaves_others_intact(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        for step in (1, 2):
            ckpt.save(step, small_state(step), data_state={"pos": step})
    state_dir = tmp_path / "2" / "state"
    victims = [p for p in state_dir.rglob("*") if p.is_file() and "metadata" not in p.name]
    assert victims
    for p in victims:
        p.unlink()
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(CheckpointError, match=re.escape(f"step 2 from {tmp_path}")):
            ckpt.restore(2, target_state=small_state(0))
        state, data = ckpt.restore(1, target_state=small_state(0))
    np.testing.assert_array_equal(state["w"], np.ones(3))
    assert data == {"pos": 1}


def test_restore_with_mismatched_target_raises(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, small_state(1))
        with pytest.raises(CheckpointError, match=re.escape(str(tmp_path))):
            ckpt.restore(target_state={"other": jnp.zeros(2)})


def test_hooks_eval_metrics_config_and_curves(tmp_path):
    calls = []

    def hook(state, step):
        calls.append((step, int(state.step)))
        return state

    evals = []

    def eval_fn(state):
        evals.append(int(state.step))
        return {"val/dice": 0.1 * int(state.step)}

    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=1, best_metric="val/dice")
    train(
        make_state(),
        step_fn,
        make_iterator(),
        num_steps=7,
        workdir=tmp_path,
        checkpoint_every=100,
        log_every=2,
        hooks=[Hook(every=3, fn=hook)],
        eval_fn=eval_fn,
        eval_every=4,
        checkpointer=ckpt,
        config={"lr": 1e-2, "nested": {"patch": (8, 8)}},
        progress=True,
        tensorboard=True,
    )
    assert calls == [(3, 3), (6, 6)]
    assert evals == [4, 7]
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6, 7]
    assert all("loss" in r for r in records)
    assert records[1]["val/dice"] == pytest.approx(0.4)
    ckpt.wait()
    assert ckpt.all_steps() == [7]  # last and best (0.7) coincide
    ckpt.close()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {"lr": 1e-2, "nested": {"patch": [8, 8]}}
    path = plot_curves(tmp_path)
    assert path == os.path.join(tmp_path, "figures", "curves.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # The TensorBoard events hold the same scalars as metrics.jsonl.
    scalars = read_tensorboard_scalars(tmp_path / "tensorboard")
    for record in records:
        for name, value in record.items():
            if name != "step":
                assert scalars[(name, record["step"])] == pytest.approx(value)
    assert len(scalars) == sum(len(r) - 1 for r in records)


def read_tensorboard_scalars(directory):
    """``{(tag, step): value}`` of the TFRecord event files in ``directory``."""
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    scalars = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            payload = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4  # length, its CRC, the payload, its CRC
            event = event_pb2.Event.FromString(payload)
            for value in event.summary.value:
                scalars[(value.tag, event.step)] = value.simple_value
    return scalars


def test_device_put_batch_on_one_device_mesh():
    mesh = make_mesh()
    batch = next(make_iterator())
    out = device_put_batch(batch, mesh)
    assert set(out) == {"image", "label", "labelled"}
    for name, value in out.items():
        assert isinstance(value.sharding, NamedSharding)
        assert value.sharding.spec == jax.sharding.PartitionSpec("data")
        np.testing.assert_array_equal(np.asarray(value), batch[name])
    with pytest.raises(ValueError, match="leading axis"):
        device_put_batch({"x": np.float32(1.0)}, mesh)


def test_without_a_terminal_a_plain_progress_line_every_twentieth(tmp_path, capsys):
    """Cluster logs: stderr is not a terminal here (captured), so no bar but plain lines at every
    multiple of max(log_every, steps // 20) and the last step; none with progress=False."""
    run(tmp_path / "a", 45, log_every=1)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train:")]
    assert [int(line.split()[2].split("/")[0]) for line in lines] == [*range(2, 45, 2), 45]
    for line in lines:
        assert "/45," in line and "steps/s" in line and "ETA" in line and "loss" in line
    run(tmp_path / "b", 4, progress=False)
    assert "train:" not in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "zero", "remove_state"])
def test_a_corrupt_latest_checkpoint_is_moved_aside_and_the_run_resumes(tmp_path, damage, capsys):
    """The newest checkpoint damaged (a data file truncated or zeroed, or the state folder
    gone): training warns, renames it ``<step>.corrupt``, resumes from the newest intact one and
    ends where an uninterrupted run does."""
    reference = run(tmp_path / "a", 9)
    run(tmp_path / "b", 6)  # checkpoints at 3 and 6
    latest = tmp_path / "b" / "checkpoints" / "6"
    files = sorted(p for p in (latest / "state").rglob("*") if p.is_file() and p.stat().st_size)
    big = max(files, key=lambda p: p.stat().st_size)
    if damage == "truncate":
        big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    elif damage == "zero":
        big.write_bytes(bytes(big.stat().st_size))
    else:
        shutil.rmtree(latest / "state")
    resumed = run(tmp_path / "b", 9)
    assert "checkpoint of step 6" in capsys.readouterr().err
    assert (tmp_path / "b" / "checkpoints" / "6.corrupt").is_dir()
    assert_states_equal(reference, resumed)
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert steps == list(range(1, 10))


def test_no_intact_checkpoint_is_a_clear_error(tmp_path):
    run(tmp_path, 3)
    shutil.rmtree(tmp_path / "checkpoints" / "3" / "state")
    with pytest.raises(CheckpointError, match=r"no checkpoint in .* restores"):
        run(tmp_path, 6)
