"""Generic training machinery: state, step plumbing, checkpoints, the loop and its logs.

A method provides ``make_train_step(config, ...)`` returning a pure
``step_fn(state, batch, key) -> (state, metrics)`` over a :class:`TrainState`; everything else
(jitting with donation, step keys ``fold_in(state.rng, state.step)``, data-parallel placement,
Orbax checkpoints with the data iterator state, exact resumption, ``metrics.jsonl``, hooks,
evaluation and figures) is here and shared.
"""

from jaxseg.train.checkpoint import Checkpointer, CheckpointError
from jaxseg.train.logging import MetricsWriter, plot_curves, read_metrics, write_json_atomic
from jaxseg.train.loop import Hook, train
from jaxseg.train.state import (
    NetState,
    TrainState,
    create_net_state,
    create_train_state,
    device_put_batch,
    jit_step,
    make_mesh,
    numeric_batch,
    replicated,
    step_key,
)

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "Hook",
    "MetricsWriter",
    "NetState",
    "TrainState",
    "create_net_state",
    "create_train_state",
    "device_put_batch",
    "jit_step",
    "make_mesh",
    "numeric_batch",
    "plot_curves",
    "read_metrics",
    "replicated",
    "step_key",
    "train",
    "write_json_atomic",
]
