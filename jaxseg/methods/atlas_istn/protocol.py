"""Atlas-ISTN's test protocol: ITN, 1-pass and refined outputs, inverse consistency,
subject-to-subject maps, ``metrics.json`` and figures (Figs. 6-8)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxseg import viz
from jaxseg.data.case import Case
from jaxseg.data.preprocess import resample_onto
from jaxseg.geometry import warp
from jaxseg.methods.atlas_istn.cases import chunks, stack_cases, to_model_grid
from jaxseg.methods.atlas_istn.model import AtlasState, forward, init_stn
from jaxseg.methods.atlas_istn.refine import make_refine, refine_lam, subject_to_subject
from jaxseg.metrics import evaluate_case, inverse_consistency
from jaxseg.train.evaluate import json_safe, nanmean, nanstd
from jaxseg.train.logging import write_json_atomic

__all__ = ["METRICS", "PREDICT_OUTPUTS", "evaluate", "predict_source"]

#: The per-case metrics of every output, in pixels/voxels, and their names in figures.
METRICS = {"dice": "Dice", "assd": "ASSD", "hausdorff": "Hausdorff", "hd95": "HD95"}


def _outputs(config: Any) -> Callable:
    """Jitted ``(params, atlas, images, itn_out=None) -> {"itn", "atlas_label", "fwd", "inv"}``."""

    def outputs(params, atlas, images, itn_out=None):
        out = forward(config, params, images, atlas, itn_out=itn_out)
        return {k: out[k] for k in ("itn", "atlas_label", "fwd", "inv")}

    return jax.jit(outputs)


def _refine_start(config: Any, params: Mapping[str, Any]) -> Any:
    """The STN parameters the refinement starts from: the trained ones, or fresh ones with
    ``refine.from_scratch``."""
    if config.refine.from_scratch:
        return init_stn(config, jax.random.key(int(config.seed) + 1), optax.adam(1.0)).params
    return params["stn"]


def _labels(scores: jax.Array) -> np.ndarray:
    return np.argmax(np.asarray(scores), axis=-1).astype(np.int32)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    table = {n: np.array([r[n] for r in records], float) for n in METRICS}
    return {
        "mean": {n: _finite(nanmean(v)) for n, v in table.items()},
        "std": {n: _finite(nanstd(v)) for n, v in table.items()},
        "cases": records,
    }


def _case_metrics(pred: np.ndarray, ref: np.ndarray, k: int) -> dict[str, float]:
    # Pixels (voxels), as the paper's letter-B figures: no spacing.
    scores = evaluate_case(pred, ref, spacing=None, labels=list(range(1, k)))["mean"]
    return {name: scores[name] for name in METRICS}


def evaluate(
    config: Any,
    state: AtlasState,
    test_sets: Mapping[str, Sequence[Case]],
    *,
    out_dir: str | os.PathLike,
    progress: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a trained state on each test set: ITN, 1-pass and refined predictions.

    ``test_sets`` are ``{name: cases}`` prepared by
    :func:`~jaxseg.methods.atlas_istn.cases.prepare_case`. Writes ``<out_dir>/metrics.json``::

        {"<test set>": {"itn" | "one_pass" | "refine" [| "refine_lam<v>"]:
                           {"mean": {dice, assd, hausdorff, hd95}, "std": {...},
                            "cases": [{"id", dice, assd, hausdorff, hd95}, ...]},
                        "inverse_consistency": {"ic_dice": {"one_pass", "refine"},
                                                "mice": {"one_pass", "refine"}},
                        "subject_to_subject": {"dice": {"one_pass", "refine"}},
                        "refine_loss": {"before", "after"}},
         "protocol": {...}, **metadata}

    Metrics are in pixels/voxels (no spacing, as the paper's letter-B results), averaged over
    the foreground labels: Dice, ASSD (the symmetric average surface distance, the paper's
    "ASD"), Hausdorff (the paper's "HD") and HD95; undefined values (an empty mask) are NaN in
    the result and null in the file. Inverse consistency (MICE in voxels, IC-Dice) of each
    case's transform pair on its reference labels; subject-to-subject Dice maps each case to
    the next one of the set through the atlas (eq. 22-23). ``refine_lam<v>`` outputs refine
    with each ``eval.refine_lams`` value (Fig. 8). Figures go to ``<out_dir>/figures/``:
    ``<test set>_predictions.png`` (the first ``eval.num_figures`` cases) and ``summary.png``.
    """
    out_dir = Path(out_dir)
    k = int(config.data.num_classes)
    chunk = max(1, int(config.eval.chunk))
    atlas = state.atlas
    params = {name: net.params for name, net in state.nets.items()}
    stn_start = _refine_start(config, params)
    refiners = {"refine": make_refine(config)}
    for lam in config.eval.refine_lams:
        refiners[f"refine_lam{float(lam):g}"] = make_refine(config, lam=float(lam))
    result: dict[str, Any] = {}
    outputs = _outputs(config)
    refined_outputs = jax.jit(
        jax.vmap(lambda p, x, y: outputs({"stn": p}, atlas, x[None], y[None]))
    )
    for set_name, cases in test_sets.items():
        images, refs = stack_cases(cases)
        preds: dict[str, list[np.ndarray]] = {name: [] for name in ("itn", "one_pass", *refiners)}
        fields: dict[str, list[np.ndarray]] = {"one_pass": [], "refine": []}
        losses = []
        bar = tqdm(total=len(cases), desc=f"evaluate {set_name}", disable=not progress)
        for part in chunks(len(cases), chunk):
            x = jnp.asarray(images[part])
            out = outputs(params, atlas, x)
            itn_out = out["itn"]
            preds["itn"].append(_labels(itn_out))
            preds["one_pass"].append(_labels(out["atlas_label"]))
            fields["one_pass"].append(np.stack([np.asarray(out["fwd"]), np.asarray(out["inv"])]))
            for name, refine in refiners.items():
                stn, loss = refine(stn_start, x, itn_out, atlas)
                refined = refined_outputs(stn, x, itn_out)
                preds[name].append(_labels(refined["atlas_label"][:, 0]))
                if name == "refine":
                    losses.append(np.asarray(loss))
                    fields["refine"].append(
                        np.stack(
                            [np.asarray(refined["fwd"][:, 0]), np.asarray(refined["inv"][:, 0])]
                        )
                    )
            bar.update(part.stop - part.start)
        bar.close()
        labels = {name: np.concatenate(p) for name, p in preds.items()}
        transforms = {name: np.concatenate(f, axis=1) for name, f in fields.items()}
        entry: dict[str, Any] = {}
        for name, predicted in labels.items():
            records = [
                {"id": case.id, **_case_metrics(pred, ref, k)}
                for case, pred, ref in zip(cases, predicted, refs)
            ]
            entry[name] = _summary(records)
        entry["inverse_consistency"] = {"ic_dice": {}, "mice": {}}
        entry["subject_to_subject"] = {"dice": {}}
        for name, (fwd, inv) in transforms.items():
            ic = [inverse_consistency(f, i, r) for f, i, r in zip(fwd, inv, refs)]
            entry["inverse_consistency"]["ic_dice"][name] = _finite(
                nanmean([c["ic_dice"] for c in ic])
            )
            entry["inverse_consistency"]["mice"][name] = _finite(nanmean([c["mice"] for c in ic]))
            entry["subject_to_subject"]["dice"][name] = _subject_to_subject_dice(fwd, inv, refs, k)
        loss = np.concatenate(losses)
        entry["refine_loss"] = {
            "before": _finite(loss[:, 0].mean()),
            "after": _finite(loss[:, -1].mean()),
        }
        result[set_name] = entry
        _predictions_figure(config, cases, labels, transforms, atlas, out_dir / "figures", set_name)
    result["protocol"] = {
        "units": "pixels/voxels",
        "refine": {
            "steps": int(config.refine.steps),
            "lr": float(config.refine.lr),
            "a2s": float(config.refine.a2s),
            "s2a": float(config.refine.s2a),
            "lam": refine_lam(config),
            "from_scratch": bool(config.refine.from_scratch),
        },
    }
    result.update(metadata or {})
    write_json_atomic(out_dir / "metrics.json", json_safe(result))
    summaries = {s: {name: v for name, v in result[s].items() if "mean" in v} for s in test_sets}
    viz.outputs_figure(
        out_dir / "figures" / "summary.png",
        summaries,
        {m: METRICS[m] for m in ("dice", "assd", "hausdorff")},
    )
    return result


def _subject_to_subject_dice(fwd, inv, refs, k: int) -> float | None:
    """Mean Dice of case ``i``'s labels mapped to case ``i + 1`` through the atlas."""
    if len(refs) < 2:
        return None
    scores = []
    for i in range(len(refs) - 1):
        disp = subject_to_subject(jnp.asarray(inv[i]), jnp.asarray(fwd[i + 1]))
        mapped = np.asarray(warp(jnp.asarray(refs[i]), disp, order=0))
        scores.append(
            evaluate_case(mapped, refs[i + 1], spacing=None, labels=list(range(1, k)))["mean"][
                "dice"
            ]
        )
    return _finite(nanmean(scores))


def _predictions_figure(config, cases, labels, transforms, atlas, out: Path, set_name) -> None:
    """Figs. 6-7: the ITN, 1-pass and refined outputs on the first ``eval.num_figures`` cases,
    and the atlas grid deformed to each subject by the 1-pass and refined transforms."""
    n = min(int(config.eval.num_figures), len(cases))
    if n == 0:
        return
    grid = jnp.asarray(viz.grid_lines(np.asarray(atlas["image"]).shape[:-1]))
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": cases[i].id,
                "image": np.asarray(cases[i].image)[..., 0],
                "ref": np.asarray(cases[i].label),
                "preds": {name: labels[name][i] for name in ("itn", "one_pass", "refine")},
                "grids": {
                    name: np.asarray(warp(grid, jnp.asarray(transforms[name][0][i]), mode="zeros"))
                    for name in ("one_pass", "refine")
                },
            }
        )
    viz.predictions_figure(
        out / f"{set_name}_predictions.png",
        rows,
        f"{set_name}: reference (green) and prediction (red)",
    )


#: The outputs ``jaxseg predict`` can write (``eval.predict_output``), as :func:`evaluate` names
#: them: the refined atlas warp (the paper's final prediction), the 1-pass warp, the ITN's.
PREDICT_OUTPUTS = ("refine", "one_pass", "itn")
_PREDICTORS: dict[tuple[str, str], Callable] = {}


def _predictor(config: Any, which: str) -> Callable:
    """Jitted ``(params, atlas, image (1, *S, 1), stn_start) -> (*S, K)``: the class scores of
    output ``which`` (the refinement starts from the STN parameters ``stn_start``),
    compiled once per config values and output (a folder's cases share it)."""
    key = (config.to_json_best_effort(sort_keys=True), which)
    if key not in _PREDICTORS:
        outputs, refine = _outputs(config), make_refine(config)

        def scores(params, atlas, image, stn_start):
            out = outputs(params, atlas, image)
            if which == "itn":
                return out["itn"][0]
            if which == "one_pass":
                return out["atlas_label"][0]
            stn, _ = refine(stn_start, image, out["itn"], atlas)
            one = jax.tree.map(lambda leaf: leaf[0], stn)
            return outputs({"stn": one}, atlas, image, out["itn"])["atlas_label"][0]

        _PREDICTORS.clear()
        _PREDICTORS[key] = jax.jit(scores)
    return _PREDICTORS[key]


def predict_source(config: Any, state: AtlasState, case: Case) -> dict[str, np.ndarray]:
    """``{"prob": (*S, K)}``: the class scores of output ``eval.predict_output`` (one of
    :data:`PREDICT_OUTPUTS`, "refine" by default) for one case as read from a file, on the
    case's own grid (``jaxseg predict``; labels by argmax). A 2D model (letter B) reads 2D
    images stored as NIfTI volumes of one slice, ``(X, Y, 1)``.

    The image goes through the training cases' preparation without their label
    (:func:`~jaxseg.methods.atlas_istn.cases.to_model_grid`), the output is
    computed as :func:`evaluate` computes it (the refinement from the trained STN, or from
    scratch with ``refine.from_scratch``), and its scores are resampled back onto the case's
    grid (linear, the exact inverse of the grid map).

    Raises:
      DataError: naming the case's file, for a spatial rank other than ``data.size``'s or more
        than one image channel.
      ValueError: for an unknown ``eval.predict_output``.
    """
    where = case.source or case.id
    size = tuple(int(s) for s in config.data.size)
    which = str(config.eval.get("predict_output", "refine"))
    if which not in PREDICT_OUTPUTS:
        raise ValueError(f"eval.predict_output must be one of {PREDICT_OUTPUTS}, got {which!r}")
    # A 2D model reads a NIfTI slice, (X, Y, 1): the image on its first two axes.
    flat = len(size) == 2 and tuple(case.spatial_shape[2:]) == (1,)
    if flat:
        case = Case(case.id, case.image[:, :, 0], None, tuple(case.spacing[:2]), None, where)
    prepared = to_model_grid(config, case)
    image = jnp.asarray(prepared.image[None], jnp.float32)
    params = {name: net.params for name, net in state.nets.items()}
    stn_start = _refine_start(config, params)
    scores = np.asarray(_predictor(config, which)(params, state.atlas, image, stn_start))
    scores = resample_onto(scores, prepared.spacing, case)
    return {"prob": scores[:, :, None] if flat else scores}
