"""STIPPLE's cases: the prior placed into training cases, positioned on test cases.

Training images get the channels of :mod:`~jaxseg.methods.stipple.model` (image, prior,
pseudo-label, mask): a labelled case has the prior placed at the centre of its label's bounding
box (Algorithm 1's centre, so the prior sits on the organ as it was built); a pseudo-labelled
case has it at the centre found when it was pseudo-labelled, with its pseudo-label and mask from
``<workdir>/pseudo/round_<t>/<id>.npz``; an unlabelled case not yet pseudo-labelled has an empty
mask (it adds nothing to the loss).

A validation, test or prediction case is positioned (:func:`locate`): the network's
probabilities without prior, the centre of ``prior.positioning``, refined by ``prior.refine``
fixed-point steps, and the prior placed there as the image's second channel, which ``predict``
fuses with the logits.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxseg.data import Case, MappedCases, Split
from jaxseg.data.transforms import Record
from jaxseg.methods.stipple.model import IMAGE, predict
from jaxseg.priors import bounding_box, locate_prior, place_prior
from jaxseg.train.evaluate import OutputFn, predict_volume, window_options

__all__ = [
    "POSITIONING",
    "PseudoLabels",
    "host_prior",
    "locate",
    "placed_prior",
    "position",
    "prepare_test_case",
    "probabilities",
    "pseudo_label_file",
    "refine",
    "training_data",
]

POSITIONING = ("kl", "naive", "label")
"""``prior.positioning`` at test time: KL search around the network's centroid (section 3.2),
the centroid alone ("naive", Table 4), or the label's own centre (an oracle, for analysis)."""


def placed_prior(config: Any, prior: np.ndarray, center: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The ``(X, Y, Z)`` prior volume centred at ``center`` with the bins stretched over the
    window's ``Dz`` slices and ``prior.floor`` outside (:func:`jaxseg.priors.place_prior`)."""
    extent = int(config.prior.size[2])
    center = np.asarray(center, np.int32)
    return np.asarray(
        place_prior(prior, center, shape, extent, floor=float(config.prior.floor)), np.float32
    )


def _label_center(label: np.ndarray) -> np.ndarray:
    """Centre of the organ's bounding box, the volume centre when the label is empty."""
    box = bounding_box(label == 1)
    return np.asarray(label.shape) // 2 if box is None else (box[0] + box[1]) // 2


def _stack(*channels: np.ndarray) -> np.ndarray:
    return np.stack(channels, axis=-1).astype(np.float32)


def _uniform(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, 0.5, np.float32)


def _training_prior(config: Any, prior: np.ndarray, center: Any, shape: tuple[int, ...]):
    """The prior channel of a training case: placed at ``center``, or uniform without prior."""
    if not bool(config.prior.use):
        return _uniform(shape)
    return placed_prior(config, prior, center, shape)


def _labelled_case(config: Any, prior: np.ndarray, case: Case) -> Case:
    shape = case.spatial_shape
    placed = _training_prior(config, prior, _label_center(case.label), shape)
    image = _stack(case.image[..., IMAGE], placed, case.label == 1, np.ones(shape))
    return dataclasses.replace(case, image=image)


def pseudo_label_file(workdir: str | Path, round_: int, case_id: str) -> Path:
    """Where round ``round_`` keeps the pseudo-labels of case ``case_id``."""
    return Path(workdir) / "pseudo" / f"round_{round_}" / f"{case_id}.npz"


class PseudoLabels:
    """The transform (``record -> record``) that gives records of the unlabelled stream STIPPLE's
    channels: those of the latest pseudo-labelling round before their batch (records with a
    label pass unchanged).

    The item at ``position`` of a stream of ``batch`` items per batch belongs to the batch of
    step ``position // batch + 1``, which follows round ``r = min(position // batch // steps,
    rounds)`` (``steps`` per round): round 0 means no pseudo-label yet (an empty mask), round
    ``r > 0`` reads ``<workdir>/pseudo/round_<r>/<id>.npz``, waiting for the file when the
    loader runs ahead of training. So every batch sees exactly the pseudo-labels of its step,
    whatever the loader's threads, worker processes and prefetching, and a resumed run repeats
    an uninterrupted one. With ``data.cache`` the channels of one round are kept per case.

    Args:
      config: the run's config (``prior``, ``data.unlabelled_batch``, ``relabel``).
      prior: the ``(Wp, Hp, B)`` prior.
      workdir: the run directory.
      steps: steps per round; rounds: ``relabel.iterations``.
      timeout: seconds to wait for a round's file before failing.
    """

    def __init__(
        self,
        config: Any,
        prior: np.ndarray,
        workdir: str | Path,
        *,
        steps: int,
        rounds: int,
        timeout: float = 3600.0,
    ):
        self.config, self.prior, self.workdir = config, prior, Path(workdir)
        self.batch = max(int(config.data.unlabelled_batch), 1)
        self.steps, self.rounds, self.timeout = int(steps), int(rounds), float(timeout)
        self._keep = bool(config.data.get("cache", False))
        self._done: dict[str, tuple[int, np.ndarray]] = {}

    def _round(self, position: int) -> int:
        return min(position // self.batch // self.steps, self.rounds)

    def _read(self, case_id: str, round_: int) -> dict[str, np.ndarray]:
        path = pseudo_label_file(self.workdir, round_, case_id)
        waited = 0.0
        while not path.is_file():
            if waited >= self.timeout:
                raise TimeoutError(
                    f"{path}: the pseudo-labels of round {round_} did not appear in "
                    f"{self.timeout:g} s"
                )
            time.sleep(0.05)
            waited += 0.05
        with np.load(path) as f:
            return {key: f[key] for key in ("label", "weight", "center")}

    def __call__(self, element: Record) -> Record:
        if element.get("label") is not None:
            return element
        image, round_ = element["image"], self._round(int(element["position"]))
        shape = image.shape[:-1]
        if round_ == 0:
            zeros = np.zeros(shape, np.float32)
            return {**element, "image": _stack(image[..., IMAGE], _uniform(shape), zeros, zeros)}
        case_id = str(element["id"])
        if case_id in self._done and self._done[case_id][0] == round_:
            return {**element, "image": self._done[case_id][1]}
        found = self._read(case_id, round_)
        placed = _training_prior(self.config, self.prior, found["center"], shape)
        out = _stack(image[..., IMAGE], placed, found["label"], found["weight"])
        if self._keep:
            self._done[case_id] = (round_, out)
        return {**element, "image": out}


def training_data(config: Any, state: Any, split: Split, workdir: str | Path) -> Split:
    """The labelled cases with STIPPLE's channels (see the module docstring), kept in memory
    once made with ``data.cache``; the unlabelled cases get theirs from :class:`PseudoLabels`
    in the pipeline."""
    del workdir
    labelled = MappedCases(
        split.labelled,
        functools.partial(_labelled_case, config, host_prior(state)),
        keep=bool(config.data.get("cache", False)),
    )
    return dataclasses.replace(split, labelled=labelled)


def host_prior(state: Any) -> np.ndarray:
    """The prior of ``state`` on the host (this process's copy of a replicated array)."""
    return np.asarray(state.prior.addressable_data(0))


def probabilities(
    config: Any, nets: Any, image: np.ndarray, placed: np.ndarray | None = None
) -> np.ndarray:
    """The organ probabilities ``(*S)`` of ``predict`` by sliding windows on one image
    ``(*S, C)`` (its channel :data:`IMAGE`) with the prior volume ``placed`` ``(*S)``, or
    without prior (a uniform prior channel) when ``placed`` is None."""
    shape = image.shape[:-1]
    prior = _uniform(shape) if placed is None else placed
    inputs = np.stack([image[..., IMAGE], prior], axis=-1)
    return predict_volume(OutputFn(predict, config), nets, inputs, **window_options(config))[..., 0]


def position(
    config: Any, prior: np.ndarray, probs: np.ndarray, label: np.ndarray | None = None
) -> np.ndarray:
    """The organ centre ``(3,)`` of a volume for ``prior.positioning``: "kl" (the centroid of
    ``probs``, then the KL search within ``prior.search`` voxels against the prior's own
    window, section 3.2), "naive" (the centroid alone) or "label" (the centre of ``label``)."""
    how = str(config.prior.positioning)
    if how not in POSITIONING:
        raise ValueError(f"prior.positioning must be one of {POSITIONING}, got {how!r}")
    if how == "label":
        if label is None:
            raise ValueError("prior.positioning = 'label' needs labelled cases")
        return _label_center(label)
    size = tuple(int(n) for n in config.prior.size)
    own = np.asarray(size) // 2
    reference = placed_prior(config, prior, own, size)
    search = tuple(config.prior.search) if how == "kl" else 0
    return np.asarray(locate_prior(probs, reference, search=search))


def _centroid(probs: np.ndarray) -> np.ndarray | None:
    total = float(probs.sum())
    if total <= 0:
        return None
    grids = np.indices(probs.shape, dtype=np.float64)
    return np.array([float((grid * probs).sum()) / total for grid in grids])


def refine(
    config: Any, nets: Any, prior: np.ndarray, image: np.ndarray, center: np.ndarray
) -> np.ndarray:
    """``prior.refine`` fixed-point steps from ``center``: place the prior there, predict, and
    move to the centroid of the prior-driven probabilities less the offset of the prior's own
    centroid from its window's centre (rounded); stop early when the centre no longer moves."""
    size = tuple(int(n) for n in config.prior.size)
    own = _centroid(placed_prior(config, prior, np.asarray(size) // 2, size))
    offset = np.zeros(3) if own is None else own - np.asarray(size) // 2
    shape = image.shape[:-1]
    center = np.asarray(center, np.int64)
    for _ in range(int(config.prior.get("refine", 0))):
        probs = probabilities(config, nets, image, placed_prior(config, prior, center, shape))
        mass = _centroid(probs)
        if mass is None:
            break
        moved = np.floor(mass - offset + 0.5).astype(np.int64)
        if np.array_equal(moved, center):
            break
        center = moved
    return center


def locate(
    config: Any, nets: Any, prior: np.ndarray, image: np.ndarray, label: np.ndarray | None = None
) -> np.ndarray:
    """The organ centre ``(3,)`` of one image ``(*S, C)``: :func:`position` on the network's
    probabilities without prior, then :func:`refine` (not for the "label" oracle)."""
    center = position(config, prior, probabilities(config, nets, image), label)
    if str(config.prior.positioning) == "label":
        return center
    return refine(config, nets, prior, image, center)


def prepare_test_case(config: Any, state: Any, case: Case) -> Case:
    """``case`` with the image channel and the prior positioned on it (:func:`locate`; a
    uniform prior when ``prior.use`` is false) as channels ``(image, prior)``."""
    image = case.image[..., IMAGE]
    if not bool(config.prior.use):
        placed = _uniform(image.shape)
    else:
        prior = host_prior(state)
        center = locate(config, state.nets, prior, case.image, case.label)
        placed = placed_prior(config, prior, center, image.shape)
    return dataclasses.replace(case, image=np.stack([image, placed], axis=-1))
