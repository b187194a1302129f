"""Surface-distance metrics against ``medpy.metric.binary`` on organ-sized labels.

Cases (deterministic, seeded): a left-atrium-like blob filling 10 % of a 112x112x80 crop at
0.625 mm, and a brain-sized blob of ~1.2M voxels in a 160x192x224 volume at 1 mm, each with a
slightly perturbed copy as the prediction. Before timing, every row checks that our values
equal medpy's to a relative 1e-6. Run ``python -m jaxseg.bench.metrics [--quick] [--out DIR]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxseg.bench.harness import compare, main
from jaxseg.metrics import asd, hd95

try:
    from medpy.metric import binary as medpy_binary
except ImportError:  # the rows then have no peer timing
    medpy_binary = None


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], wavelength: float):
    """Random smooth field (sum of 12 plane waves of one wavelength in voxels), unit variance."""
    grids = np.meshgrid(
        *(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True
    )
    field = np.zeros(shape, np.float32)
    for _ in range(12):
        direction = rng.standard_normal(len(shape))
        frequency = 2 * np.pi / wavelength * direction / np.linalg.norm(direction)
        phase = sum(np.float32(f) * g for f, g in zip(frequency, grids, strict=True))
        field += np.cos(phase + np.float32(rng.uniform(0, 2 * np.pi)))
    return field / np.sqrt(6.0)


def organ_pair(shape: tuple[int, ...], voxels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A deformed-ellipsoid reference of ``voxels`` voxels and a perturbed prediction (Dice ~0.94).

    The reference is a level set of an ellipsoid plus a smooth field of wavelength 0.4 of the
    image size; the prediction adds a weaker field of wavelength 0.12 of the image size.
    """
    rng = np.random.default_rng(seed)
    size = float(np.mean(shape))
    grids = np.meshgrid(
        *(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij", sparse=True
    )
    centre = rng.uniform(-0.1, 0.1, len(shape))
    radii = rng.uniform(0.8, 1.2, len(shape))
    level = -sum(
        ((g - np.float32(c)) / np.float32(r)) ** 2
        for g, c, r in zip(grids, centre, radii, strict=True)
    )
    level = level + 0.25 * _smooth_field(rng, shape, 0.4 * size)
    threshold = np.partition(level.ravel(), level.size - voxels)[level.size - voxels]
    ref = level >= threshold
    pred = level + 0.05 * _smooth_field(rng, shape, 0.12 * size) >= threshold
    return pred, ref


def metric_row(
    name: str, pred, ref, spacing, metrics, *, target, warmup, repeats
) -> dict[str, Any]:
    """The row timing ``metrics`` (names among "hd95", "asd") of ``pred`` against ``ref`` (bool
    ``(*S)``, ``spacing`` in mm), against medpy when installed; raises AssertionError when the
    values differ from medpy's by more than a relative 1e-6."""
    ours_fns = {"hd95": hd95, "asd": asd}
    ours = {m: ours_fns[m](pred, ref, spacing=spacing) for m in metrics}
    peer = None
    extra: dict[str, Any] = {
        "shape": list(pred.shape),
        "spacing": list(spacing),
        "foreground": [int(pred.sum()), int(ref.sum())],
        "values": ours,
    }
    if medpy_binary is not None:
        peer_fns = {"hd95": medpy_binary.hd95, "asd": medpy_binary.asd}
        expected = {m: peer_fns[m](pred, ref, voxelspacing=spacing) for m in metrics}
        if any(abs(ours[m] - expected[m]) > 1e-6 * abs(expected[m]) for m in metrics):
            raise AssertionError(f"{name}: ours {ours} != medpy {expected}")
        extra["peer_values"] = expected

        def peer():
            return [peer_fns[m](pred, ref, voxelspacing=spacing) for m in metrics]

    return compare(
        name,
        lambda: [ours_fns[m](pred, ref, spacing=spacing) for m in metrics],
        peer,
        peer_name="medpy",
        target=target,
        warmup=warmup,
        repeats=repeats,
        **extra,
    )


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Time hd95 (+ asd) on the atrium- and brain-sized cases; ``quick`` means fewer repeats."""
    timing = {"warmup": 1, "repeats": 3} if quick else {"warmup": 2, "repeats": 7}
    atrium = organ_pair((112, 112, 80), 100_000, seed=0)
    brain = organ_pair((160, 192, 224), 1_200_000, seed=0)
    return [
        metric_row(
            "hd95+asd 112x112x80", *atrium, (0.625,) * 3, ("hd95", "asd"), target=5, **timing
        ),
        metric_row("hd95 160x192x224", *brain, (1.0,) * 3, ("hd95",), target=10, **timing),
        metric_row(
            "hd95+asd 160x192x224", *brain, (1.0,) * 3, ("hd95", "asd"), target=None, **timing
        ),
    ]


if __name__ == "__main__":
    main("metrics")
