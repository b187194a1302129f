"""Figures shared by every method: slices with contours, per-case Dice, training curves, seeds,
Atlas-ISTN's atlas, prediction and summary figures, and STIPPLE's spatial prior.

Every function draws on a fresh matplotlib :class:`~matplotlib.figure.Figure` with an Agg canvas
(:func:`new_figure`, outside pyplot's global state, so it is safe in threads and never opens a
window) and writes a PNG with :func:`save_png`: through a temporary file and an atomic rename, so
a reader never sees half a file, with the usual file permissions. Arrays are numpy (anything
``np.asarray`` accepts); 2D maps are drawn as stored (axis 0 top to bottom, axis 1 left to
right), and a 3D volume by its middle slice along the last axis unless a function says otherwise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxseg.atomic import atomic_path

__all__ = [
    "atlas_figure",
    "case_figure",
    "curves_figure",
    "dice_figure",
    "draw_contours",
    "grid_lines",
    "middle_slice",
    "new_figure",
    "outputs_figure",
    "predictions_figure",
    "prior_figure",
    "save_png",
    "seeds_figure",
]

_REFERENCE, _PREDICTION = "#2ca02c", "#d62728"


# ---------------------------------------------------------------------------------------------
# Building blocks


def new_figure(figsize: tuple[float, float]):
    """A matplotlib figure of ``figsize`` inches with an Agg canvas and constrained layout,
    outside pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: str | os.PathLike) -> None:
    """Write ``fig`` as a PNG (100 dpi) through a temporary file and an atomic rename, creating
    the parent folder."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        fig.savefig(f, format="png", dpi=100)


def draw_contours(ax, labels: np.ndarray, color: str, width: float) -> None:
    """Draw the outline of every foreground label of a 2D map ``(rows, columns)`` on ``ax``
    (nothing for a map that is all one label or thinner than 2 pixels)."""
    labels = np.asarray(labels)
    for value in np.unique(labels):
        if value == 0:
            continue
        mask = labels == value
        if mask.all() or min(mask.shape) < 2:
            continue
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=color, linewidths=width)


def middle_slice(volume: np.ndarray) -> np.ndarray:
    """A 2D map ``(X, Y)`` as it is; the middle slice ``volume[:, :, Z // 2]`` of a 3D one."""
    volume = np.asarray(volume)
    return volume if volume.ndim == 2 else volume[:, :, volume.shape[2] // 2]


def grid_lines(shape: Sequence[int], spacing: int = 4) -> np.ndarray:
    """Float32 ``(*shape)`` image of grid lines: 1 where the voxel index along axis 0 or 1 is a
    multiple of ``spacing``, else 0 (warp it to show a deformation)."""
    index = np.indices(tuple(int(s) for s in shape))
    return ((index[0] % spacing == 0) | (index[1] % spacing == 0)).astype(np.float32)


def _legend(fig) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=_REFERENCE, label="reference"),
        Line2D([], [], color=_PREDICTION, label="prediction"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8, frameon=False)


# ---------------------------------------------------------------------------------------------
# Evaluation of one output


def _axial_slices(ref: np.ndarray) -> list[int]:
    """Slices along the last axis at 25/50/75 % of the reference's foreground extent.

    Without foreground the extent is the whole axis, so the middle slice is the volume's.
    """
    depth = ref.shape[-1]
    present = np.flatnonzero((ref > 0).reshape(-1, depth).any(axis=0))
    lo, hi = (int(present[0]), int(present[-1])) if present.size else (0, depth - 1)
    return [lo + round(q * (hi - lo)) for q in (0.25, 0.5, 0.75)]


def case_figure(
    path: str | os.PathLike,
    image: np.ndarray,
    ref: np.ndarray,
    pred: np.ndarray,
    spacing: Sequence[float] | None,
    title: str,
) -> None:
    """One case with the reference (green) and prediction (red) contours.

    Args:
      image: ``(*S)`` intensities (one channel), drawn between their 1st and 99th percentiles.
      ref, pred: ``(*S)`` integer label maps.
      spacing: mm per voxel (sets the aspect ratio); None for 1.
      title: the figure's title.

    A 2D case is drawn as stored; a 3D one as three axial slices (the last axis) at 25/50/75 % of
    the reference's extent, transposed so that axis 0 runs left to right.
    """
    image, ref, pred = np.asarray(image), np.asarray(ref), np.asarray(pred)
    spacing = tuple(float(s) for s in spacing) if spacing else (1.0,) * image.ndim
    if image.ndim == 2:
        slices = [(image, ref, pred, None)]
        aspect = spacing[0] / spacing[1]
    else:
        slices = []
        for k in _axial_slices(ref):
            index = (*(0,) * (image.ndim - 3), slice(None), slice(None), k)
            slices.append((image[index].T, ref[index].T, pred[index].T, k))
        aspect = spacing[-2] / spacing[-3]
    finite = image[np.isfinite(image)]
    vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1.0

    fig = new_figure((3.6 * len(slices), 4.2))
    axes = fig.subplots(1, len(slices), squeeze=False)[0]
    for ax, (img, lab, prd, k) in zip(axes, slices):
        ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
        draw_contours(ax, lab, _REFERENCE, 1.6)
        draw_contours(ax, prd, _PREDICTION, 1.0)
        ax.set_title("2D" if k is None else f"axial slice {k}", fontsize=9)
        ax.set_axis_off()
    _legend(fig)
    fig.suptitle(title, fontsize=10)
    save_png(fig, path)


def dice_figure(path: str | os.PathLike, records: Sequence[Mapping[str, Any]], mean: float) -> None:
    """Per-case Dice, sorted, with a box plot and the ``mean`` line.

    ``records`` are ``{"id": str, "dice": float}`` (more keys are ignored); NaN Dice values are
    left out and counted in the title.
    """
    points = sorted(
        ((r["dice"], r["id"]) for r in records if not math.isnan(r["dice"])), key=lambda p: p[0]
    )
    undefined = len(records) - len(points)
    fig = new_figure((max(6.0, 0.25 * len(points) + 3.0), 4.0))
    strip, box = fig.subplots(1, 2, width_ratios=[4, 1], sharey=True)
    values = np.array([p[0] for p in points], dtype=np.float64)
    ranks = np.arange(1, len(points) + 1)
    if points:
        strip.plot(ranks, values, "o", color="#1f77b4", markersize=5)
        strip.axhline(mean, color=_PREDICTION, linestyle="--", label=f"mean {mean:.4f}")
        strip.legend(loc="lower right", fontsize=8)
        if len(points) <= 40:
            strip.set_xticks(ranks, [p[1] for p in points], rotation=90, fontsize=7)
        strip.set_xlim(0.5, len(points) + 0.5)
        box.boxplot(values, widths=0.5)
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        box.plot(1.0 + jitter, values, "o", color="#1f77b4", alpha=0.6, markersize=4)
        box.axhline(mean, color=_PREDICTION, linestyle="--")
    else:
        strip.text(0.5, 0.5, "no case has a defined Dice", ha="center", transform=strip.transAxes)
    strip.set_xlabel("case (sorted by Dice)")
    strip.set_ylabel("Dice")
    strip.set_ylim(-0.02, 1.02)
    strip.grid(alpha=0.3)
    box.set_xticks([1], ["all"])
    box.grid(alpha=0.3)
    note = f", {undefined} undefined" if undefined else ""
    fig.suptitle(f"Dice per case ({len(points)} cases{note})", fontsize=10)
    save_png(fig, path)


# ---------------------------------------------------------------------------------------------
# Runs


def curves_figure(records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Every logged quantity against the step, one panel each (three per row).

    ``records`` are ``metrics.jsonl`` lines, ``{"step": int, name: float or None, ...}``; None
    values (non-finite when logged) are skipped.
    """
    names = sorted({k for r in records for k in r if k != "step"})
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = new_figure((4 * cols, 3 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        points = [(r["step"], r[name]) for r in records if r.get(name) is not None]
        ax.plot(
            [p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None
        )
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    save_png(fig, path)


def seeds_figure(
    dice_per_seed: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str
) -> None:
    """Test Dice per case, one column per seed (``{seed: [Dice of each case]}``), with each
    seed's mean (NaN values ignored) as a black bar."""
    fig = new_figure((1.2 + 1.0 * len(dice_per_seed), 3.2))
    ax = fig.add_subplot()
    for i, values in enumerate(dice_per_seed.values()):
        values = np.asarray(values, float)
        ax.scatter(np.full(values.shape, i), values, s=12, alpha=0.7)
        finite = values[~np.isnan(values)]
        if finite.size:
            ax.hlines(finite.mean(), i - 0.3, i + 0.3, color="k")
    ax.set_xticks(range(len(dice_per_seed)), [f"seed {s}" for s in dice_per_seed])
    ax.set_ylabel("test Dice")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    save_png(fig, path)


# ---------------------------------------------------------------------------------------------
# Atlas-ISTN


def atlas_figure(
    initial: Mapping[str, np.ndarray],
    current: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    title: str,
) -> None:
    """The initial and the current atlas (rows): image and foreground probability.

    Atlases are ``{"image": (*S, 1), "label": (*S, K)}`` with channel 0 the background;
    ``title`` names the current one (e.g. its epoch).
    """
    fig = new_figure((6.4, 6.4))
    axes = fig.subplots(2, 2, squeeze=False)
    for row, (atlas, name) in enumerate(((initial, "initial"), (current, title))):
        image = middle_slice(np.asarray(atlas["image"])[..., 0])
        foreground = middle_slice(1.0 - np.asarray(atlas["label"])[..., 0])
        axes[row, 0].imshow(image, cmap="gray")
        axes[row, 0].set_title(f"atlas image ({name})", fontsize=9)
        axes[row, 1].imshow(foreground, cmap="magma", vmin=0, vmax=1)
        axes[row, 1].set_title(f"atlas foreground ({name})", fontsize=9)
        for ax in axes[row]:
            ax.set_axis_off()
    save_png(fig, path)


def prior_figure(prior: np.ndarray, path: str | os.PathLike, title: str) -> None:
    """The bins of a spatial prior ``(Wp, Hp, B)`` side by side (STIPPLE's Figs. 2 and 5), bin 0
    (the organ's lowest slices along Z) first, probabilities on one colour scale."""
    prior = np.asarray(prior)
    bins = prior.shape[2]
    fig = new_figure((2.0 * bins + 0.8, 2.6))
    axes = fig.subplots(1, bins, squeeze=False)[0]
    for b, ax in enumerate(axes):
        shown = ax.imshow(prior[:, :, b], cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"bin {b}", fontsize=8)
        ax.set_axis_off()
    fig.colorbar(shown, ax=list(axes), fraction=0.02)
    fig.suptitle(title, fontsize=10)
    save_png(fig, path)


def predictions_figure(
    path: str | os.PathLike, cases: Sequence[Mapping[str, Any]], title: str
) -> None:
    """One row per case: the image with the reference (green) and each output's (red) contours,
    then each deformed grid with that output's contour.

    Args:
      cases: ``{"id": str, "image": (*S), "ref": (*S), "preds": {output: (*S) labels},
        "grids": {output: (*S) grid lines warped by that output's transform}}``; every name of
        ``grids`` is also one of ``preds``.
      title: the figure's title.
    """
    if not cases:
        return
    outputs, grids = list(cases[0]["preds"]), list(cases[0]["grids"])
    columns = len(outputs) + len(grids)
    fig = new_figure((3.0 * columns, 3.1 * len(cases)))
    axes = fig.subplots(len(cases), columns, squeeze=False)
    for row, case in enumerate(cases):
        image, ref = middle_slice(case["image"]), middle_slice(case["ref"])
        for col, name in enumerate(outputs):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray")
            draw_contours(ax, ref, _REFERENCE, 1.4)
            draw_contours(ax, middle_slice(case["preds"][name]), _PREDICTION, 1.0)
            ax.set_title(f"{case['id']}: {name}", fontsize=8)
        for col, name in enumerate(grids, start=len(outputs)):
            ax = axes[row, col]
            ax.imshow(middle_slice(case["grids"][name]), cmap="gray_r")
            draw_contours(ax, middle_slice(case["preds"][name]), _PREDICTION, 1.0)
            ax.set_title(f"atlas grid to subject ({name})", fontsize=8)
        for ax in axes[row]:
            ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    save_png(fig, path)


def outputs_figure(
    path: str | os.PathLike,
    summaries: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float | None]]]],
    metrics: Mapping[str, str],
) -> None:
    """Bars of mean ± std per output, one panel per metric, one group per test set.

    Args:
      summaries: ``{test set: {output: {"mean": {metric: value}, "std": {metric: value}}}}``
        (None or NaN: undefined, no bar); every test set has the outputs of the first.
      metrics: ``{metric key: panel title}``, e.g. ``{"dice": "Dice", "assd": "ASSD"}``.
    """
    sets = list(summaries)
    outputs = list(summaries[sets[0]])
    fig = new_figure((4.0 * len(metrics), 3.6))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    width = 0.8 / max(len(outputs), 1)

    def value(entry, stat, metric):
        v = entry[stat].get(metric)
        return math.nan if v is None else float(v)

    for ax, (metric, name) in zip(axes, metrics.items()):
        for j, output in enumerate(outputs):
            pos = np.arange(len(sets)) + (j - (len(outputs) - 1) / 2) * width
            means = [value(summaries[s][output], "mean", metric) for s in sets]
            stds = [value(summaries[s][output], "std", metric) for s in sets]
            ax.bar(pos, means, width, yerr=stds, label=output, capsize=2)
        ax.set_xticks(np.arange(len(sets)), sets)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=7)
    save_png(fig, path)
