"""STIPPLE's preparation (the prior from the labelled cases) and Algorithm 2's pseudo-labelling
rounds.

Rounds. The run's ``train.steps`` are cut into ``relabel.iterations + 1`` equal rounds. At the
end of round ``t - 1`` (after step ``t * steps // (T + 1)``, ``t = 1..T``) every unlabelled case
is predicted with the positioned prior (:func:`jaxseg.methods.stipple.cases.locate`) and its
pseudo-labels are chosen with :func:`jaxseg.priors.select_pseudo_labels`: of the ``n`` voxels
predicted organ (probability > 0.5), the ``round(gamma_t n)`` most confident are organ, and of
the others the ``round(gamma_t (N - n))`` least likely organ are background, ``gamma_t =
relabel.gamma[t - 1]``; the remaining voxels have no target. Training then goes on, with the
same optimizer and schedule, on the labelled and the pseudo-labelled cases (from the first batch
after the round on: :class:`~jaxseg.methods.stipple.cases.PseudoLabels`) (Algorithm 2
retrains on the enlarged set; continuing the run costs one training instead of ``T + 1``).

Files: ``<workdir>/pseudo/round_<t>/<id>.npz`` (``label``, ``weight`` uint8, ``center``),
``<workdir>/figures/prior.png`` and ``<workdir>/figures/pseudo_round_<t>.png``. When a run
resumes, the rounds after its last checkpoint are deleted first, so that the steps before them
see exactly the pseudo-labels an uninterrupted run saw.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxseg.atomic import atomic_path
from jaxseg.data import Case, Split
from jaxseg.methods.stipple.cases import (
    host_prior,
    locate,
    placed_prior,
    probabilities,
    pseudo_label_file,
)
from jaxseg.methods.stipple.model import IMAGE, put_like
from jaxseg.priors import build_spatial_prior, select_pseudo_labels
from jaxseg.train import Hook
from jaxseg.train.checkpoint import Checkpointer
from jaxseg.train.state import local_copy
from jaxseg.viz import predictions_figure, prior_figure

__all__ = ["prepare", "pseudo_labels", "round_steps"]


def round_steps(config: Any) -> int:
    """Steps per round: ``train.steps // (relabel.iterations + 1)``."""
    rounds = int(config.relabel.iterations) + 1
    steps = int(config.train.steps) // rounds
    if steps < 1:
        raise ValueError(f"train.steps = {config.train.steps} is too short for {rounds} rounds")
    return steps


def _gamma(config: Any, round_: int) -> float:
    gammas = tuple(float(g) for g in config.relabel.gamma)
    if len(gammas) < int(config.relabel.iterations) or not all(0 < g <= 1 for g in gammas):
        raise ValueError(
            f"relabel.gamma needs one value in (0, 1] per iteration "
            f"({config.relabel.iterations}), got {gammas}"
        )
    return gammas[round_ - 1]


def pseudo_labels(
    config: Any, nets: Any, prior: np.ndarray, image: np.ndarray, gamma: float
) -> dict[str, np.ndarray]:
    """Pseudo-labels of one unlabelled image ``(*S, C)`` (see the module docstring):
    ``{"label", "weight"}`` uint8 ``(*S)``, ``"center"`` ``(3,)``, ``"prob"`` ``(*S)``."""
    shape = image.shape[:-1]
    if bool(config.prior.use):
        center = locate(config, nets, prior, image)
        prob = probabilities(config, nets, image, placed_prior(config, prior, center, shape))
    else:
        center = np.asarray(shape) // 2
        prob = probabilities(config, nets, image)
    organ = int(np.sum(prob > 0.5))
    k, k_background = round(gamma * organ), round(gamma * (prob.size - organ))
    label, weight = select_pseudo_labels(prob, k, k_background=k_background)
    return {
        "label": np.asarray(label, np.uint8),
        "weight": np.asarray(weight, np.uint8),
        "center": np.asarray(center, np.int32),
        "prob": prob,
    }


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def _figure_case(case: Case, result: dict[str, np.ndarray]) -> dict[str, Any]:
    """The axial slice through the pseudo-labels' centre, as a one-slice volume."""
    z = int(np.clip(result["center"][2], 0, case.spatial_shape[2] - 1))
    ref = np.zeros(case.spatial_shape, np.int32) if case.label is None else case.label
    cut = np.s_[:, :, z : z + 1]
    return {
        "id": f"{case.id} (z={z})",
        "image": case.image[..., IMAGE][cut],
        "ref": (ref == 1)[cut],
        "preds": {
            "prediction": (result["prob"] > 0.5)[cut],
            "pseudo organ": result["label"][cut],
            "pseudo background": (result["weight"] & (1 - result["label"]))[cut],
        },
        "grids": {},
    }


def _round(config: Any, state: Any, cases: Sequence[Case], workdir: Path, round_: int) -> None:
    """Pseudo-label ``cases`` with the networks of ``state`` into round ``round_``'s folder
    (process 0 writes; every process waits for it)."""
    primary = jax.process_index() == 0
    gamma = _gamma(config, round_)
    nets, prior = local_copy(state.nets), host_prior(state)
    shown = []
    if primary:
        for case in cases:
            result = pseudo_labels(config, nets, prior, case.image, gamma)
            _write(
                pseudo_label_file(workdir, round_, case.id),
                {key: result[key] for key in ("label", "weight", "center")},
            )
            if len(shown) < int(config.eval.num_figures):
                shown.append(_figure_case(case, result))
        title = f"pseudo-labels of round {round_} (gamma {gamma:g}; green: reference)"
        predictions_figure(workdir / "figures" / f"pseudo_round_{round_}.png", shown, title)
    _wait_for_process_0(f"stipple pseudo-labels round {round_}")


def _wait_for_process_0(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _drop_later_rounds(config: Any, workdir: Path) -> None:
    """Delete the pseudo-label rounds written after the run's last checkpoint (resumption)."""
    with Checkpointer(workdir / "checkpoints") as checkpointer:
        last = checkpointer.latest_step() or 0
    spr = round_steps(config)
    for folder in sorted((workdir / "pseudo").glob("round_*")):
        suffix = folder.name.split("_")[1]
        if suffix.isdigit() and int(suffix) * spr > last:
            shutil.rmtree(folder)


def prepare(config: Any, state: Any, split: Split, workdir: str | Path) -> tuple[Any, list[Hook]]:
    """The state with the spatial prior of the labelled cases (Algorithm 1 with ``prior.bins``
    bins over the window ``prior.size``) and the pseudo-labelling hook (none when
    ``relabel.iterations`` is 0 or there is no unlabelled case)."""
    workdir = Path(workdir)
    labels = [case.label for case in split.labelled]
    prior = build_spatial_prior(
        labels, bins=int(config.prior.bins), size=tuple(int(n) for n in config.prior.size)
    )
    state = state.replace(prior=put_like(prior, state.prior))
    if jax.process_index() == 0:
        title = f"spatial prior of {len(labels)} labelled cases, window {tuple(config.prior.size)}"
        prior_figure(prior, workdir / "figures" / "prior.png", title)
        _drop_later_rounds(config, workdir)
    _wait_for_process_0("stipple prepare")
    iterations = int(config.relabel.iterations)
    if iterations == 0 or len(split.unlabelled) == 0:
        return state, []
    spr = round_steps(config)

    def relabel(state: Any, step: int) -> Any:
        round_ = step // spr
        if 1 <= round_ <= iterations:
            _round(config, state, split.unlabelled, workdir, round_)
        return state

    return state, [Hook(every=spr, fn=relabel)]
