"""``jaxseg demo``: a tour of the library on synthetic data, with figures.

Part 1, the pure core: it builds an LA-like synthetic volume (a smooth blob with MR-like
intensities), draws a smooth random stationary velocity field, integrates it by scaling and
squaring, warps image and label, and measures what the library measures: inverse consistency
(MICE, IC-Dice), Jacobian determinant and folding, signed distance maps, Dice and surface
distances. Results go to ``WORKDIR/metrics.json`` and ``WORKDIR/figures/*.png``.

Part 2, training: a short SASSNet run (2 labelled and 6 unlabelled LA-like phantoms of 32^3
voxels, a 4-filter V-Net) on the training engine, evaluated on two test phantoms by sliding
window, in ``WORKDIR/sassnet`` (a run directory as ``jaxseg train`` writes it: metrics.jsonl,
checkpoints, eval/metrics.json, training curves and prediction figures).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from jaxseg.atomic import write_text
from jaxseg.geometry import (
    compose,
    folding_fraction,
    integrate_svf,
    jacobian_determinant,
    warp,
)
from jaxseg.metrics import dice, evaluate_case, inverse_consistency
from jaxseg.shape import sdm_to_mask, signed_distance_map


def synthetic_volume(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An ``(size,)*3`` blob label (a smoothly deformed ellipsoid) and an MR-like image."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij"), -1)
    radii = np.array([0.45, 0.35, 0.3])
    bumps = ndimage.gaussian_filter(rng.normal(size=(size,) * 3), size / 8)
    bumps *= 0.25 / np.abs(bumps).max()
    label = (np.sum((grid / radii) ** 2, -1) < 1 + bumps).astype(np.uint8)
    bias = 1 + 0.2 * grid[..., 0] - 0.15 * grid[..., 2]
    texture = ndimage.gaussian_filter(rng.normal(size=label.shape), 1.5) * 2
    image = (np.where(label, 0.8, 0.3) + 0.05 * texture) * bias
    image = image + 0.03 * rng.normal(size=label.shape)
    return image.astype(np.float32), label


def smooth_velocity(
    shape: tuple[int, ...], *, amplitude: float, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """A smooth random ``(*shape, N)`` velocity field (Gaussian-filtered white noise, ``sigma``
    in voxels) scaled to a maximum absolute component of ``amplitude`` voxels, float32."""
    comps = [ndimage.gaussian_filter(rng.normal(size=shape), sigma) for _ in shape]
    field = np.stack(comps, -1)
    return (field * amplitude / np.abs(field).max()).astype(np.float32)


def _write_json(path: Path, payload: dict) -> None:
    write_text(path, json.dumps(payload, indent=2) + "\n")


def _figures(out: Path, image, moved, label, moved_label, disp, det, residual, sdm) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = label.shape[2] // 2
    paths = []

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.4), layout="constrained")
    step = max(label.shape[0] // 24, 1)
    xs, ys = np.meshgrid(np.arange(label.shape[0]), np.arange(label.shape[1]), indexing="ij")
    px, py = xs + disp[:, :, z, 0], ys + disp[:, :, z, 1]
    ax = axes[0]
    for i in range(0, label.shape[0], step):
        ax.plot(py[i, :], px[i, :], lw=0.6, color="tab:blue")
    for j in range(0, label.shape[1], step):
        ax.plot(py[:, j], px[:, j], lw=0.6, color="tab:blue")
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_title("deformed grid x + u(x)")
    im = axes[1].imshow(det[:, :, z], cmap="RdBu_r", vmin=0, vmax=2)
    axes[1].set_title("Jacobian determinant")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    im = axes[2].imshow(np.linalg.norm(residual[:, :, z], axis=-1), cmap="magma")
    axes[2].set_title("|exp(v) o exp(-v) - id| (voxels)")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    fig.suptitle(f"exp(v) by scaling and squaring, axial slice {z}")
    paths.append(out / "deformation.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), layout="constrained")
    for ax, img, title in ((axes[0], image, "image"), (axes[1], moved, "warped image")):
        ax.imshow(img[:, :, z], cmap="gray")
        ax.contour(label[:, :, z], levels=[0.5], colors="tab:green", linewidths=1)
        ax.contour(moved_label[:, :, z], levels=[0.5], colors="tab:red", linewidths=1)
        ax.set_title(title)
    im = axes[2].imshow(sdm[:, :, z], cmap="RdBu_r", vmin=-1, vmax=1)
    axes[2].contour(label[:, :, z], levels=[0.5], colors="k", linewidths=1)
    axes[2].set_title("signed distance map of the label")
    fig.suptitle(f"green: label, red: label warped by exp(v); axial slice {z}")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    paths.append(out / "volumes.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def train_demo(workdir: Path, *, steps: int = 60, seed: int = 0) -> dict:
    """Train and evaluate the short SASSNet run of part 2 in ``workdir``; returns the test
    evaluation (``eval/metrics.json``)."""
    from jaxseg.methods import get_method
    from jaxseg.train.experiment import run_experiment

    if steps < 2:
        raise ValueError(f"the training demo needs at least 2 steps, got {steps}")
    method = get_method("sassnet")
    config = method.default_config("smoke")
    config.seed = seed
    config.data.synthetic.update(train=8, val=1, test=2)
    config.eval.num_figures = 2
    config.train.update(steps=steps, checkpoint_every=steps // 2, eval_every=steps // 2)
    config.train.log_every = max(1, steps // 30)
    return run_experiment(method, config, workdir, progress=True)


def run_demo(workdir: Path, *, size: int = 96, seed: int = 0, train_steps: int = 60) -> dict:
    """Run the demo, write ``metrics.json`` and figures under ``workdir``; returns the metrics.

    ``train_steps`` = 0 skips part 2 (training)."""
    if size < 16:
        raise ValueError(f"size must be at least 16 voxels, got {size}")
    workdir = Path(workdir)
    (workdir / "figures").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stages = tqdm(total=5, desc="jaxseg demo", unit="stage")

    stages.set_postfix_str("synthetic data")
    image, label = synthetic_volume(size, rng)
    velocity = jnp.asarray(
        smooth_velocity((size,) * 3, amplitude=size / 12, sigma=size / 8, rng=rng)
    )
    stages.update()

    stages.set_postfix_str("scaling and squaring")
    fwd = jax.block_until_ready(integrate_svf(velocity, steps=7))  # compiles
    start = time.perf_counter()
    fwd = jax.block_until_ready(integrate_svf(velocity, steps=7))
    integrate_s = time.perf_counter() - start
    inv = integrate_svf(-velocity, steps=7)
    stages.update()

    stages.set_postfix_str("warping")
    moved = np.asarray(warp(image, fwd))
    moved_label = np.asarray(warp(label, fwd, order=0))
    det = np.asarray(jacobian_determinant(fwd))
    stages.update()

    stages.set_postfix_str("shape and metrics")
    sdm = np.asarray(signed_distance_map(label))
    # sdm_to_mask gives exactly 0.5 on the inner boundary (sdm = 0), so >= 0.5 recovers it.
    recovered = np.asarray(sdm_to_mask(jnp.asarray(sdm))) >= 0.5
    # Single label: the "mean" record of evaluate_case is that label's metrics (in voxels).
    overlap = evaluate_case(moved_label, label, spacing=(1.0, 1.0, 1.0), labels=(1,))["mean"]
    consistency = inverse_consistency(fwd, inv, label)
    stages.update()

    metrics = {
        "size": size,
        "seed": seed,
        "device": jax.devices()[0].device_kind,
        "velocity_max_voxels": float(jnp.abs(velocity).max()),
        "displacement_max_voxels": float(jnp.abs(fwd).max()),
        "integrate_svf_seconds": integrate_s,
        "jacobian_min": float(det.min()),
        "jacobian_max": float(det.max()),
        "folding_fraction": float(folding_fraction(fwd)),
        "inverse_consistency": consistency,
        "warped_vs_original": overlap,
        "sdm_range": [float(sdm.min()), float(sdm.max())],
        "sdm_round_trip_dice": dice(recovered, label),
    }
    stages.set_postfix_str("figures")
    residual = np.asarray(compose(fwd, inv))
    figures = _figures(
        workdir / "figures", image, moved, label, moved_label, np.asarray(fwd), det, residual, sdm
    )
    metrics["figures"] = [str(p.relative_to(workdir)) for p in figures]
    _write_json(workdir / "metrics.json", metrics)
    stages.update()
    stages.close()

    print(
        f"integrate_svf (7 steps, {size}^3): {integrate_s * 1e3:.0f} ms; "
        f"max displacement {metrics['displacement_max_voxels']:.2f} voxels; "
        f"Jacobian in [{metrics['jacobian_min']:.2f}, {metrics['jacobian_max']:.2f}], "
        f"folding {metrics['folding_fraction']:.2%}"
    )
    print(f"inverse consistency: {consistency}")
    print(f"warped label vs original: {overlap}")
    print(f"wrote {workdir / 'metrics.json'} and {len(figures)} figures in {workdir / 'figures'}")
    if train_steps:
        result = train_demo(workdir / "sassnet", steps=train_steps, seed=seed)
        mean = result["mean"]
        metrics["sassnet"] = {"steps": train_steps, "test": mean}
        _write_json(workdir / "metrics.json", metrics)
        print(
            f"SASSNet, {train_steps} steps: test Dice {mean['dice']:.3f}, HD95 "
            f"{mean['hd95']:.2f} mm, ASD {mean['asd']:.2f} mm; run directory "
            f"{workdir / 'sassnet'}"
        )
    return metrics
