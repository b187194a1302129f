"""The training state, one pytree, and the plumbing of a training step.

State
-----
:class:`TrainState` is a plain pytree (a ``flax.struct`` dataclass)::

    TrainState(step=int32 (), rng=key (), nets={"seg": NetState(...), "disc": NetState(...)})

Each :class:`NetState` holds one network's ``params``, ``batch_stats`` (``{}`` for a network
without BatchNorm) and ``opt_state``. Modules and optimizers are *not* in the state: they are
static and live in the step function (built by a method's ``make_train_step``), so the whole
state can be jitted, donated, sharded and checkpointed as it is.

Steps
-----
A step function is pure: ``step_fn(state, batch, key) -> (state, metrics)`` where ``metrics`` is
a dict of scalars. The loop (:func:`jaxseg.train.train`) calls it with
``key = jax.random.fold_in(state.rng, state.step)`` (:func:`step_key`), so the randomness of
step ``s`` depends only on the seed and ``s`` and a resumed run draws the same keys. The step
function must not change ``state.step``: :func:`jit_step` increments it once per call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "NetState",
    "StepFn",
    "TrainState",
    "create_net_state",
    "create_train_state",
    "device_put_batch",
    "jit_step",
    "local_copy",
    "make_mesh",
    "numeric_batch",
    "replicated",
    "step_key",
]

StepFn = Callable[[Any, Mapping[str, Any], jax.Array], tuple[Any, dict[str, jax.Array]]]


@flax.struct.dataclass
class NetState:
    """One network's trainable state: ``params``, ``batch_stats`` and ``opt_state``."""

    params: Any
    batch_stats: Any
    opt_state: Any

    def apply_gradients(
        self, grads: Any, optimizer: optax.GradientTransformation, *, batch_stats: Any = None
    ) -> NetState:
        """The state after one optimizer step with ``grads`` (and new ``batch_stats`` if given)."""
        updates, opt_state = optimizer.update(grads, self.opt_state, self.params)
        return self.replace(
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            batch_stats=self.batch_stats if batch_stats is None else batch_stats,
        )

    @property
    def variables(self) -> dict[str, Any]:
        """The Flax variables for ``module.apply``: ``params`` and, if any, ``batch_stats``."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}


@flax.struct.dataclass
class TrainState:
    """The whole training state: ``step`` (int32 scalar), ``rng`` (typed key), ``nets``."""

    step: jax.Array
    rng: jax.Array
    nets: dict[str, NetState]


def create_net_state(
    module: flax.linen.Module,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    *example_inputs: Any,
    **init_kwargs: Any,
) -> NetState:
    """Initialise ``module`` on ``example_inputs`` and ``optimizer`` on its parameters.

    ``key`` seeds both the ``params`` and the ``dropout`` rng streams of ``module.init``;
    ``init_kwargs`` are passed to the module call (e.g. ``train=False``).
    """
    params_key, dropout_key = jax.random.split(key)
    variables = module.init(
        {"params": params_key, "dropout": dropout_key}, *example_inputs, **init_kwargs
    )
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return NetState(params=params, batch_stats=batch_stats, opt_state=optimizer.init(params))


def create_train_state(nets: Mapping[str, NetState], seed: int | jax.Array) -> TrainState:
    """A :class:`TrainState` at step 0 whose ``rng`` is ``jax.random.key(seed)``.

    ``seed`` may also be a typed key, used as it is.
    """
    rng = seed if _is_key(seed) else jax.random.key(int(seed))
    return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, nets=dict(nets))


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def step_key(state: TrainState) -> jax.Array:
    """The key of the next step: ``jax.random.fold_in(state.rng, state.step)``."""
    return jax.random.fold_in(state.rng, state.step)


_JITTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def jit_step(step_fn: StepFn) -> Callable[..., tuple[Any, dict[str, jax.Array]]]:
    """``step_fn`` jitted once, its state argument donated, ``state.step`` incremented.

    The result has the signature of ``step_fn``, ``(state, batch, key) -> (state, metrics)``.
    The input state's buffers are donated: do not use them after the call. The jitted function
    is cached per ``step_fn`` object, so calling :func:`~jaxseg.train.train` again with the same
    step function (e.g. to resume) reuses its compilation.
    """
    try:
        return _JITTED[step_fn]
    except (KeyError, TypeError):
        pass

    def step(state, batch, key):
        new_state, metrics = step_fn(state, batch, key)
        return new_state.replace(step=state.step + 1), metrics

    jitted = jax.jit(step, donate_argnums=0)
    try:
        _JITTED[step_fn] = jitted
    except TypeError:  # not weak-referenceable: no caching
        pass
    return jitted


def numeric_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``batch`` that can go to a device (drops strings such as ``"id"``)."""
    out = {}
    for name, value in batch.items():
        kind = np.asarray(value).dtype.kind if not isinstance(value, jax.Array) else "f"
        if kind in "biufc":
            out[name] = value
    return out


def make_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all of ``jax.devices()``)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def device_put_batch(batch: Mapping[str, Any], mesh: Mesh | None = None) -> dict[str, jax.Array]:
    """The global batch of this process's ``batch``, the leading axis split along ``"data"``.

    Non-numeric entries (``"id"``) are dropped. Every process passes its own contiguous slice of
    the global batch (:func:`jaxseg.data.semi_supervised_dataset` with ``process_index``);
    ``jax.make_array_from_process_local_data`` puts them side by side in process order. On one
    process this is a plain transfer with a ``NamedSharding``. The leading axis of every entry
    must be divisible by the number of this process's devices of the mesh.
    """
    mesh = make_mesh() if mesh is None else mesh
    sharding = NamedSharding(mesh, P("data"))
    local = len(mesh.local_devices)
    out = {}
    for name, value in numeric_batch(batch).items():
        if np.ndim(value) == 0 or np.shape(value)[0] % local:
            raise ValueError(
                f"batch entry {name!r}: leading axis divisible by {local} devices expected, "
                f"got shape {np.shape(value)}"
            )
        out[name] = jax.make_array_from_process_local_data(sharding, np.asarray(value))
    return out


def replicated(mesh: Mesh | None = None) -> NamedSharding:
    """The sharding of arrays held whole by every device of ``mesh`` (the training state's)."""
    return NamedSharding(make_mesh() if mesh is None else mesh, P())


def local_copy(tree: Any) -> Any:
    """The arrays of a replicated ``tree`` as plain arrays on this process's first device, for
    work one process does alone (evaluation, figures) while the others need not take part."""

    def one(x: Any) -> Any:
        return x.addressable_data(0) if isinstance(x, jax.Array) else x

    return jax.tree.map(one, tree)
