"""Host-side input pipelines on grain: per-record augmentation and (semi-)supervised batches.

Records and batches
-------------------
A *record* is one case as a dict (:func:`case_to_record`)::

    {"image": float32 (*S, C), "label": int32 (*S) or None, "id": str}

A *batch* stacks records along a new first axis::

    {"image": float32 (B, *P, C), "label": int32 (B, *P), "labelled": bool (B,), "id": str (B,)}

In a pipeline every record also carries ``"position"``, its index in its (shuffled, repeated)
stream, which transforms may read: in a two-stream pipeline item ``position`` of a stream of
``size`` items per batch belongs to batch ``position // size`` (the batch of training step
``position // size + 1``), whichever process reads it.

Records without a label (the unlabelled stream, or unlabelled cases in :func:`dataset`) get a
label of zeros and ``labelled = False``: which items are supervised is carried by ``labelled``,
never by their position in the batch. ``id`` is a numpy string array for logging; drop it before
``jax.device_put``.

Randomness
----------
Augmentations are :class:`grain.transforms.RandomMap` objects and draw only from the
``np.random.Generator`` grain hands them, which grain seeds from the pipeline seed and the
record's position in the (shuffled, repeated) stream. Nothing touches a global RNG, so the same
arguments give the same batches whatever the number of threads or worker processes.

Two-stream batches
------------------
The LA reference code (UA-MT, SASSNet, DTC, DTML) draws its batches with a
``TwoStreamBatchSampler``: the labelled indices are shuffled and consumed once per "epoch"
(``len(labelled) // labelled_bs`` batches), while the unlabelled indices are reshuffled and cycled
as often as needed, and each batch is ``labelled_bs`` labelled items followed by the unlabelled
ones. Training there is counted in iterations, so the epochs are only bookkeeping. Here both
streams are grain ``MapDataset`` pipelines, each shuffled with its own seed, repeated
(reshuffled on every pass) and augmented; batch ``k`` holds items ``k * labelled_batch`` to
``(k + 1) * labelled_batch - 1`` of the labelled stream followed by the same slice of the
unlabelled one. ``num_epochs`` counts passes over the labelled stream, as in the reference; the
unlabelled stream runs as long as needed. Batches are cut from the continuous stream, so when
``len(labelled)`` is not a multiple of ``labelled_batch`` a batch may straddle two passes (the
reference drops the remainder of each pass instead).

Resumption and several processes
--------------------------------
The whole pipeline is a ``MapDataset`` (random access by step) converted once with
``to_iter_dataset``, so an iterator's state is the index of the next batch:
``it.get_state()`` is a small JSON-serialisable dict, and ``set_state`` on a fresh iterator of
the same dataset resumes with exactly the batches an uninterrupted run would have seen. Save it
with the model checkpoint. With worker processes the state lists one position per worker: restore
it with the same ``num_workers``.

Batch sizes are global: those of the whole data-parallel step. With several processes (hosts
of a ``jax.distributed`` run) each builds the pipeline with its ``process_index`` and the common
``process_count`` (``jax.process_index()``, ``jax.process_count()``) and yields only its
contiguous slice of every global batch, items ``process_index * b`` to ``(process_index + 1) * b
- 1`` with ``b = batch / process_count``; it reads and augments those items only.
``jax.make_array_from_process_local_data`` then assembles exactly the batch one process would
have made, since the streams, their seeds and every item's augmentation depend on the item's
place in its stream, never on the process. So a run gives the same batches, and up to the order
of floating-point reductions the same losses, on any number of processes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import grain
import numpy as np

from jaxseg.data.case import Case
from jaxseg.data.transforms import Record, Transform, check_sizes, default_transforms

__all__ = [
    "LoaderOptions",
    "case_to_record",
    "dataset",
    "loader_options",
    "semi_supervised_dataset",
]


def case_to_record(case: Case) -> Record:
    """The record of a :class:`~jaxseg.data.case.Case`: ``{"image", "label", "id"}``.

    ``image`` is float32 ``(*S, C)``, ``label`` int32 ``(*S)`` or None. The arrays are the
    case's own (no copy); transforms never write into their input.
    """
    return {"image": case.image, "label": case.label, "id": case.id}


def _labelled_record(case: Case) -> Record:
    """The record of a case of the labelled stream, which must have a label."""
    if case.label is None:
        raise ValueError(f"labelled case {case.id!r} ({case.source or 'in memory'}) has no label")
    return case_to_record(case)


def _unlabelled_record(case: Case) -> Record:
    """The record of ``case`` without its label: nothing supervises the unlabelled stream."""
    return {"image": case.image, "label": None, "id": case.id}


# ---------------------------------------------------------------------------------------------
# Loader options


@dataclasses.dataclass(frozen=True)
class LoaderOptions:
    """How a pipeline is executed; never changes which batches it yields.

    Attributes:
      num_workers: grain worker processes (``mp_prefetch``); 0 runs in the training process.
      read_threads: threads per process that produce batches (``grain.ReadOptions``); 0 makes
        them on demand in the calling thread.
      prefetch: batches buffered ahead, per process.
    """

    num_workers: int = 0
    read_threads: int = 1
    prefetch: int = 2

    def __post_init__(self) -> None:
        if self.num_workers < 0 or self.read_threads < 0 or self.prefetch < 0:
            raise ValueError(f"loader options must be non-negative, got {self}")

    def read_options(self) -> grain.ReadOptions:
        return grain.ReadOptions(
            num_threads=self.read_threads, prefetch_buffer_size=max(self.prefetch, 1)
        )

    def multiprocessing_options(self) -> grain.MultiprocessingOptions:
        return grain.MultiprocessingOptions(
            num_workers=self.num_workers, per_worker_buffer_size=max(self.prefetch, 1)
        )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def loader_options(*, cpu_count: int | None = None, **overrides: int) -> LoaderOptions:
    """Sensible :class:`LoaderOptions` for a host with ``cpu_count`` CPUs (default: this one's).

    Up to 4 CPUs the pipeline stays in the training process: no worker process (each would
    re-import the libraries and hold its own copies), one background thread (two with 3-4
    CPUs) that prepares the next batches while the jitted step runs. With more CPUs,
    ``min(cpu_count // 2, 8)`` worker processes with one thread each take the augmentation off
    the training process. Two batches are buffered ahead, not grain's default 500: 3D batches
    are tens of MB each. ``overrides`` set fields directly, e.g. ``num_workers=0``.
    """
    cpus = _cpu_count() if cpu_count is None else int(cpu_count)
    if cpus <= 2:
        options = LoaderOptions(num_workers=0, read_threads=1)
    elif cpus <= 4:
        options = LoaderOptions(num_workers=0, read_threads=2)
    else:
        options = LoaderOptions(num_workers=min(cpus // 2, 8), read_threads=1)
    return dataclasses.replace(options, **overrides)


# ---------------------------------------------------------------------------------------------
# Batching


def _collate(records: Sequence[Record], patch: tuple[int, ...] | None) -> dict[str, np.ndarray]:
    """Stack records into a batch; missing labels become zeros with ``labelled = False``."""
    shapes = {r["image"].shape for r in records}
    ids = [str(r["id"]) for r in records]
    if len(shapes) != 1:
        raise ValueError(
            f"records {ids} have image shapes {sorted(shapes)}: a batch needs one shape "
            "(crop to a patch, or use batch_size=1 for whole volumes)"
        )
    if patch is not None and records[0]["image"].shape[:-1] != patch:
        raise ValueError(
            f"records {ids} have image shape {records[0]['image'].shape}, expected "
            f"(*patch, C) with patch {patch}: the transforms must crop to the patch"
        )
    spatial = records[0]["image"].shape[:-1]
    labelled = np.array([r.get("label") is not None for r in records])
    label = np.zeros((len(records), *spatial), np.int32)
    for i, record in enumerate(records):
        if labelled[i]:
            label[i] = record["label"]
    return {
        "image": np.stack([r["image"] for r in records]).astype(np.float32, copy=False),
        "label": label,
        "labelled": labelled,
        "id": np.array(ids),
    }


class _ProcessSlice:
    """``step -> batch``: this process's items of global batch ``step``, collated (picklable).

    ``parts`` are ``(stream, size)`` pairs, the streams' items in batch order (labelled, then
    unlabelled): item ``i`` of global batch ``step`` is item ``step * size + i - offset`` of the
    part it falls in. ``last`` is the size of a smaller last batch (``dataset`` without
    ``drop_remainder``), ``steps`` the number of batches.
    """

    def __init__(self, parts, start: int, count: int, patch, steps: int, last: int | None = None):
        self.parts, self.start, self.count, self.patch = list(parts), start, count, patch
        self.steps, self.last = steps, last

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        stop = self.start + self.count
        if self.last is not None and step == self.steps - 1:
            stop = min(stop, self.last)
        records, offset = [], 0
        for stream, size in self.parts:
            for i in range(max(self.start, offset), min(stop, offset + size)):
                records.append(stream[step * size + i - offset])
            offset += size
        return _collate(records, self.patch)


def _stream_seed(seed: int, stream: int) -> int:
    """A 32-bit seed for one stream, independent of the other streams'."""
    return int(np.random.SeedSequence([seed, stream, 0]).generate_state(1)[0])


def _process_slice(batch: int, process_index: int, process_count: int) -> tuple[int, int]:
    """``(start, count)`` of this process's items in a global batch of ``batch`` items."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got process_index={process_index}, "
            f"process_count={process_count}"
        )
    if batch % process_count:
        raise ValueError(
            f"a global batch of {batch} items cannot be split evenly over {process_count} processes"
        )
    count = batch // process_count
    return process_index * count, count


def _apply(ds: grain.MapDataset, transforms: Sequence[Transform]) -> grain.MapDataset:
    for transform in transforms:
        if isinstance(transform, grain.transforms.RandomMap):
            ds = ds.random_map(transform)
        elif isinstance(transform, grain.transforms.Map) or callable(transform):
            ds = ds.map(transform)
        else:
            raise TypeError(
                f"a transform must be a grain RandomMap or Map, or a callable record -> record; "
                f"got {transform!r}"
            )
    return ds


def _stream(
    cases: Sequence[Case],
    to_record: Callable[[Case], Record],
    *,
    seed: int,
    shuffle: bool,
    num_epochs: int | None,
    transforms: Sequence[Transform],
) -> grain.MapDataset:
    """Records of ``cases``, shuffled (anew every pass), repeated, augmented; lazy: an item is
    read and augmented only when indexed."""
    ds = grain.MapDataset.source(cases).seed(seed)
    if shuffle:
        ds = ds.shuffle()
    ds = ds.repeat(num_epochs)
    ds = ds.map_with_index(_Positioned(to_record))
    return _apply(ds, transforms)


class _Positioned:
    """``(index, case) -> record`` with ``"position": index``, the item's place in its stream
    (picklable, for grain's worker processes)."""

    def __init__(self, to_record: Callable[[Case], Record]):
        self.to_record = to_record

    def __call__(self, index: int, case: Case) -> Record:
        return {**self.to_record(case), "position": int(index)}


def _use_default_flags_if_unparsed() -> None:
    """Let grain start worker processes in programs that do not parse absl flags.

    grain (0.2.x) reads one of its absl flags when it starts worker processes and raises
    ``UnparsedFlagAccessError`` unless the program was started through ``absl.app``; marking the
    flags parsed makes them read their defaults, and a later ``absl.app.run`` still parses argv.
    """
    from absl import flags  # grain's own dependency, imported only when workers start

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _finish(ds: grain.MapDataset, options: LoaderOptions | None) -> grain.IterDataset:
    options = loader_options() if options is None else options
    out = ds.to_iter_dataset(options.read_options())
    if options.num_workers > 0:
        _use_default_flags_if_unparsed()
        out = out.mp_prefetch(options.multiprocessing_options())
    return out


def _shapes_and_transforms(
    patch: Sequence[int] | None, transforms: Sequence[Transform] | None
) -> tuple[tuple[int, ...] | None, tuple[Transform, ...]]:
    patch = None if patch is None else check_sizes("patch", patch)
    transforms = default_transforms(patch) if transforms is None else tuple(transforms)
    return patch, transforms


def semi_supervised_dataset(
    labelled_cases: Sequence[Case],
    unlabelled_cases: Sequence[Case],
    *,
    patch: Sequence[int],
    labelled_batch: int = 2,
    unlabelled_batch: int = 2,
    seed: int,
    transforms: Sequence[Transform] | None = None,
    num_epochs: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    options: LoaderOptions | None = None,
) -> grain.IterDataset:
    """Two-stream batches: ``labelled_batch`` labelled then ``unlabelled_batch`` unlabelled items.

    Each batch is ``{"image": (B, *patch, C) float32, "label": (B, *patch) int32,
    "labelled": (B,) bool, "id": (B,) str}`` with ``B = labelled_batch + unlabelled_batch``
    (2 + 2 in the LA papers) on one process. Unlabelled items have a zero label and
    ``labelled = False``; labels of ``unlabelled_cases`` are dropped (LA's "unlabelled" cases
    have labels on disk). With no unlabelled cases the batches are supervised only:
    ``B = labelled_batch``, all ``labelled``. The streams, their seeds and epochs, resumption
    and several processes are described in the module docstring.

    Args:
      labelled_cases: cases with labels (a sequence; it may load lazily in ``__getitem__``).
      unlabelled_cases: cases whose labels are not used; may be empty.
      patch: spatial patch size ``P``; every record must leave the transforms with this shape.
      labelled_batch, unlabelled_batch: items per global batch from each stream.
      seed: pipeline seed; the same seed gives the same batches.
      transforms: per-record transforms applied in order to both streams (grain ``RandomMap``
        or ``Map`` objects, or callables ``record -> record``); default
        :func:`default_transforms` ``(patch)``.
      num_epochs: passes over the labelled cases, or None to repeat forever.
      process_index, process_count: this process's slice of every global batch: ``B /
        process_count`` items (``B`` must divide evenly).
      options: execution options; default :func:`loader_options`.

    Returns:
      A ``grain.IterDataset``; ``iter()`` gives a ``grain.DatasetIterator`` with
      ``get_state()``/``set_state()``.
    """
    patch, transforms = _shapes_and_transforms(patch, transforms)
    labelled_batch = check_sizes("labelled_batch", labelled_batch)[0]
    if unlabelled_cases:
        unlabelled_batch = check_sizes("unlabelled_batch", unlabelled_batch)[0]
    else:
        unlabelled_batch = 0
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be positive or None, got {num_epochs}")
    if not labelled_cases:
        raise ValueError("no labelled cases: a semi-supervised batch needs labelled items")
    start, count = _process_slice(labelled_batch + unlabelled_batch, process_index, process_count)

    def stream(cases, to_record, index: int) -> grain.MapDataset:
        return _stream(
            cases,
            to_record,
            seed=_stream_seed(seed, index),
            shuffle=True,
            num_epochs=num_epochs if index == 0 else None,
            transforms=transforms,
        )

    parts = [(stream(labelled_cases, _labelled_record, 0), labelled_batch)]
    if unlabelled_cases:
        parts.append((stream(unlabelled_cases, _unlabelled_record, 1), unlabelled_batch))
    steps = min(len(part) // size for part, size in parts)
    if steps < 1:
        raise ValueError(
            f"{num_epochs} epoch(s) of {len(labelled_cases)} labelled cases make no batch of "
            f"{labelled_batch}"
        )
    batches = grain.MapDataset.range(steps).map(_ProcessSlice(parts, start, count, patch, steps))
    return _finish(batches, options)


def dataset(
    cases: Sequence[Case],
    *,
    patch: Sequence[int] | None,
    batch_size: int,
    seed: int,
    transforms: Sequence[Transform] | None = None,
    num_epochs: int | None = None,
    shuffle: bool = True,
    drop_remainder: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    options: LoaderOptions | None = None,
) -> grain.IterDataset:
    """One-stream batches of ``cases``, for supervised training, validation and other methods.

    Batches have the layout of :func:`semi_supervised_dataset`; a case without a label gets
    zeros and ``labelled = False``. For training use the defaults (shuffled, repeated,
    :func:`default_transforms`). For validation on whole volumes pass ``patch=None,
    batch_size=1, transforms=(), shuffle=False, num_epochs=1, drop_remainder=False``: the cases
    then come in order, unchanged.

    Args:
      cases: the cases (a sequence; it may load lazily in ``__getitem__``).
      patch: spatial size every record has after the transforms, or None for any shape (a
        batch still needs one shape).
      batch_size: items per global batch.
      seed: seed of the shuffle and the random transforms.
      transforms: per-record transforms, default :func:`default_transforms` ``(patch)``.
      num_epochs: passes over the cases, or None to repeat forever.
      shuffle: shuffle the cases (anew on every pass).
      drop_remainder: drop a last, smaller batch (only with finite ``num_epochs``; needed with
        several processes, which must all take part in every step).
      process_index, process_count: this process's slice of every global batch, as in
        :func:`semi_supervised_dataset`.
      options: execution options; default :func:`loader_options`.

    Returns:
      A ``grain.IterDataset`` of batches.
    """
    patch, transforms = _shapes_and_transforms(patch, transforms)
    batch_size = check_sizes("batch_size", batch_size)[0]
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be positive or None, got {num_epochs}")
    start, count = _process_slice(batch_size, process_index, process_count)
    ds = _stream(
        cases,
        case_to_record,
        seed=_stream_seed(seed, 0),
        shuffle=shuffle,
        num_epochs=num_epochs,
        transforms=transforms,
    )
    steps, last = divmod(len(ds), batch_size)
    if drop_remainder or not last:
        last = None
    elif process_count > 1:
        raise ValueError(
            f"{len(ds)} items leave a last batch of {last} that {process_count} processes cannot "
            "share: use drop_remainder=True"
        )
    else:
        steps += 1
    batches = grain.MapDataset.range(steps).map(
        _ProcessSlice([(ds, batch_size)], start, count, patch, steps, last)
    )
    return _finish(batches, options)
