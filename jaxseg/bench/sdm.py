"""Signed distance maps: ``jaxseg.shape.signed_distance_map`` against the reference ``compute_sdf``.

The reference is the SASSNet/DTML code's ``compute_sdf``: per sample, scipy's exact Euclidean
distance transform of the mask and of its complement, skimage's ``find_boundaries`` and the
normalisation, on the host. Ours is the jitted, vmapped JAX transform. Inputs are a batch of
four LA-atrium-like masks of 112x112x80 (the SASSNet/DTML training crop), built
deterministically. Rows:

* ``cpu default path``: ours on the CPU backend against the reference (target: 2x faster);
* ``jax jit, <platform>``: ours on the default device; on an accelerator, also against the
  reference on the host.

Each row records ``max_abs_diff``, the largest difference between ours and the reference.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from scipy import ndimage as ndi

from jaxseg.bench.harness import compare, main
from jaxseg.shape import signed_distance_map

BATCH_SHAPE = (4, 112, 112, 80)
PEER_NAME = "scipy+skimage compute_sdf"


def atrium_like_masks(shape: tuple[int, ...] = BATCH_SHAPE, *, seed: int = 0) -> np.ndarray:
    """Bool ``shape = (B, *S)``: one smooth, irregular blob per sample, 5-15 % foreground.

    Each blob is an ellipsoid (random centre and semi-axes) whose surface is perturbed by
    low-frequency noise, thresholded at the quantile that gives a random foreground fraction.
    """
    rng = np.random.default_rng(seed)
    batch, spatial = shape[0], shape[1:]
    grid = np.stack(np.meshgrid(*(np.linspace(-1.0, 1.0, n) for n in spatial), indexing="ij"))
    masks = np.empty(shape, bool)
    for b in range(batch):
        center = rng.uniform(-0.15, 0.15, len(spatial))
        semi_axes = rng.uniform(0.35, 0.6, len(spatial))
        offsets = (grid - center.reshape(-1, *([1] * len(spatial)))) / semi_axes.reshape(
            -1, *([1] * len(spatial))
        )
        noise = ndi.gaussian_filter(rng.standard_normal(spatial), sigma=8.0)
        field = noise / noise.std() * 0.3 - np.sqrt((offsets**2).sum(0))
        masks[b] = field > np.quantile(field, 1.0 - rng.uniform(0.05, 0.15))
    return masks


def reference_sdm(masks: np.ndarray) -> np.ndarray:
    """The reference ``compute_sdf`` for a batch ``(B, *S)``, sample by sample (float64)."""
    from skimage.segmentation import find_boundaries

    out = np.zeros(masks.shape)
    for b, posmask in enumerate(masks):
        if not posmask.any():
            continue
        negmask = ~posmask
        posdis = ndi.distance_transform_edt(posmask)
        negdis = ndi.distance_transform_edt(negmask)
        boundary = find_boundaries(posmask, mode="inner")
        sdf = (negdis - negdis.min()) / (negdis.max() - negdis.min()) - (posdis - posdis.min()) / (
            posdis.max() - posdis.min()
        )
        sdf[boundary] = 0
        out[b] = sdf
    return out


def has_skimage() -> bool:
    """Whether scikit-image (the reference's ``find_boundaries``) is installed."""
    try:
        import skimage.segmentation  # noqa: F401
    except ImportError:
        return False
    return True


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Time the SDM of a 4x112x112x80 batch; ``quick`` takes fewer repeats."""
    timing = {"warmup": 1, "repeats": 3} if quick else {}
    masks = atrium_like_masks()
    label = "x".join(map(str, BATCH_SHAPE))
    batched = jax.jit(jax.vmap(signed_distance_map))
    peer = (lambda: reference_sdm(masks)) if has_skimage() else None
    expected = reference_sdm(masks) if peer is not None else None

    def extra(out: jax.Array) -> dict[str, Any]:
        info: dict[str, Any] = {"foreground_fraction": float(masks.mean())}
        if expected is not None:
            info["max_abs_diff"] = float(np.abs(np.asarray(out) - expected).max())
        return info

    rows = []
    on_cpu = jax.device_put(masks, jax.devices("cpu")[0])
    rows.append(
        compare(
            f"sdm {label} (cpu default path)",
            lambda: batched(on_cpu),
            peer,
            peer_name=PEER_NAME,
            target=2.0,
            **timing,
            **extra(batched(on_cpu)),
        )
    )
    device = jax.devices()[0]
    on_device = jax.device_put(masks, device)
    rows.append(
        compare(
            f"sdm {label} (jax jit, {device.platform})",
            lambda: batched(on_device),
            peer if device.platform != "cpu" else None,
            peer_name=PEER_NAME,
            **timing,
            **extra(batched(on_device)),
        )
    )
    return rows


if __name__ == "__main__":
    main("sdm")
