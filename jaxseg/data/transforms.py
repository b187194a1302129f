"""Per-record transforms of the input pipelines: random crop, axial rot90/flip, random affine,
shift of some channels, normalisation (grain ``RandomMap``/``Map`` objects; see
:mod:`jaxseg.data.pipeline`).

A *record* is one case as a dict ``{"image": float32 (*S, C), "label": int32 (*S) or None,
"id": str}``. Random transforms draw only from the ``np.random.Generator`` grain hands them and
never write into their input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np
from scipy import ndimage

__all__ = [
    "RandomAffine",
    "RandomChannelShift",
    "RandomCrop",
    "RandomRotFlip",
    "Record",
    "Transform",
    "default_transforms",
    "normalize",
]

Record = dict[str, Any]
Transform = grain.transforms.RandomMap | grain.transforms.Map | Callable[[Record], Record]


def spatial_shape(record: Record) -> tuple[int, ...]:
    """The spatial shape ``S`` of a record's image ``(*S, C)``."""
    return tuple(record["image"].shape[:-1])


def check_sizes(name: str, values: Sequence[int] | int) -> tuple[int, ...]:
    """``values`` (an int or a sequence) as a tuple of positive ints; ValueError naming ``name``
    otherwise."""
    values = (values,) if isinstance(values, int | np.integer) else tuple(values)
    if not values or not all(int(v) == v and v > 0 for v in values):
        raise ValueError(f"{name} must be positive integers, got {values}")
    return tuple(int(v) for v in values)


# ---------------------------------------------------------------------------------------------
# Per-record transforms


def normalize(record: Record, *, eps: float = 1e-8) -> Record:
    """Z-score the image of one case, per channel: ``(x - mean) / std`` over all voxels.

    A constant channel (``std <= eps``) is only centred, so it becomes 0, never NaN. The label is
    unchanged. Deterministic: use it as a ``map`` step (a plain function in ``transforms``).

    Args:
      record: ``{"image": (*S, C), ...}``.
      eps: smallest standard deviation that is divided by.

    Returns:
      A new record whose image is float32 ``(*S, C)`` with zero mean and unit variance per channel.
    """
    image = np.asarray(record["image"], np.float32)
    axes = tuple(range(image.ndim - 1))
    mean = image.mean(axis=axes, dtype=np.float64)
    std = image.std(axis=axes, dtype=np.float64)
    std = np.where(std > eps, std, 1.0)
    return {**record, "image": ((image - mean) / std).astype(np.float32)}


class RandomCrop(grain.transforms.RandomMap):
    """Crop a random ``patch`` from image and label, zero-padding volumes smaller than it.

    Along every axis where the volume is smaller than the patch it is first padded to the patch
    size, half before and half after (the odd voxel after), with 0 in the image and 0
    (background) in the label; after z-scoring, 0 is the mean intensity. Then a crop offset is
    drawn uniformly among all ``size - patch + 1`` positions per axis. This is the LA papers'
    ``RandomCrop`` with two differences: the reference also pads volumes *equal* to the patch
    and adds a 3-voxel margin on each side of a padded axis, and its ``randint`` never picks the
    last offset.

    With ``foreground_prob > 0`` the crop is, with that probability and when the record has
    foreground (label > 0), centred on a uniformly drawn foreground voxel (clipped to stay inside
    the volume), as in some LA pipelines. The default 0 keeps the papers' uniform crop.

    Works for any number of spatial axes; records without a label are cropped alike.

    Args:
      patch: spatial size ``P`` of the output, ``len(S)`` positive ints.
      foreground_prob: probability of a foreground-centred crop, in [0, 1].
    """

    def __init__(self, patch: Sequence[int], *, foreground_prob: float = 0.0):
        self.patch = check_sizes("patch", patch)
        if not 0.0 <= foreground_prob <= 1.0:
            raise ValueError(f"foreground_prob must lie in [0, 1], got {foreground_prob}")
        self.foreground_prob = float(foreground_prob)

    def __repr__(self) -> str:
        return f"RandomCrop(patch={self.patch}, foreground_prob={self.foreground_prob})"

    def random_map(self, element: Record, rng: np.random.Generator) -> Record:
        """Crop ``element`` (``{"image": (*S, C), "label": (*S) or None}``) to ``(*P, C)``."""
        image, label = element["image"], element.get("label")
        shape = spatial_shape(element)
        if len(shape) != len(self.patch):
            raise ValueError(
                f"record {element.get('id')!r}: image (*S, C) with len(S) = {len(self.patch)} "
                f"expected for patch {self.patch}, got shape {image.shape}"
            )
        short = [max(p - s, 0) for p, s in zip(self.patch, shape)]
        if any(short):
            pad = [(d // 2, d - d // 2) for d in short]
            image = np.pad(image, [*pad, (0, 0)])
            if label is not None:
                label = np.pad(label, pad)
            shape = image.shape[:-1]
        room = np.array(shape) - np.array(self.patch)
        centred = (
            self.foreground_prob > 0
            and label is not None
            and rng.random() < self.foreground_prob
            and (foreground := np.flatnonzero(label > 0)).size > 0
        )
        if centred:
            voxel = np.unravel_index(foreground[rng.integers(foreground.size)], shape)
            start = np.clip(np.array(voxel) - np.array(self.patch) // 2, 0, room)
        else:
            start = rng.integers(0, room + 1)
        window = tuple(slice(int(b), int(b) + p) for b, p in zip(start, self.patch))
        out = {**element, "image": image[window]}
        if label is not None:
            out["label"] = label[window]
        return out


class RandomRotFlip(grain.transforms.RandomMap):
    """The LA papers' ``RandomRotFlip``: a random axial rot90, then a random axial flip.

    Draws ``k`` uniformly in {0, 1, 2, 3} and rotates by ``k`` quarter turns in the plane of
    spatial axes 0 and 1 (``np.rot90(x, k, axes=(0, 1))``), then draws one of those two axes and
    flips along it. Image and label undergo the same permutation of voxels (odd ``k`` swaps the
    sizes of axes 0 and 1). Records without a label are transformed alike. Returns views, not
    copies; batching copies them.
    """

    def __repr__(self) -> str:
        return "RandomRotFlip()"

    def random_map(self, element: Record, rng: np.random.Generator) -> Record:
        """Rotate and flip ``element`` (``{"image": (*S, C), "label": (*S) or None}``)."""
        if element["image"].ndim < 3:
            raise ValueError(
                f"record {element.get('id')!r}: RandomRotFlip needs an image (*S, C) with at "
                f"least 2 spatial axes, got shape {element['image'].shape}"
            )
        k = int(rng.integers(4))
        axis = int(rng.integers(2))

        def apply(x: np.ndarray) -> np.ndarray:
            return np.flip(np.rot90(x, k, axes=(0, 1)), axis=axis)

        out = {**element, "image": apply(element["image"])}
        if element.get("label") is not None:
            out["label"] = apply(element["label"])
        return out


def _rotation(angles: np.ndarray) -> np.ndarray:
    """``(N, N)`` rotation in the convention of :func:`jaxseg.geometry.affine_matrix`."""
    if angles.size == 1:
        c, s = np.cos(angles[0]), np.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    rotation = np.eye(3)
    for axis in range(3):
        i, j = [k for k in range(3) if k != axis]
        c, s = np.cos(angles[axis]), np.sin(angles[axis])
        plane = np.eye(3)
        plane[i, i], plane[i, j], plane[j, i], plane[j, j] = c, -s, s, c
        rotation = rotation @ plane
    return rotation


class RandomAffine(grain.transforms.RandomMap):
    """Random translation, rotation and scaling about the volume centre (Atlas-ISTN's CT runs).

    Each call draws, uniformly and independently, a translation ``t_i`` in
    ``[-translation_i, translation_i]`` voxels per axis, rotation angles in
    ``[-rotation_k, rotation_k]`` radians (one angle in 2D, three in 3D) and a scale factor in
    ``[1 - scaling_i, 1 + scaling_i]`` per axis, and builds the matrix ``S R T`` of
    :func:`jaxseg.geometry.affine_matrix`. The output voxel ``x`` samples the input at
    ``A (x - c) + b + c`` (``c`` the centre, ``A``, ``b`` the matrix's linear part and offset),
    which is ``warp(image, affine_disp(matrix, S))``: linear interpolation for the image,
    nearest neighbour for the label (so label values stay in the input's set). The output keeps
    the input's shape.

    Resampling uses ``scipy.ndimage.affine_transform``, not :func:`jaxseg.geometry.warp`. On 2
    CPU cores for a 112x112x80 volume with its label, scipy took about 95 ms and the jitted JAX
    warp about 30-50 ms, but the JAX version compiles for every new volume shape (about 0.45 s
    each, and LA volumes all differ), runs on the default device (the accelerator) unless pinned
    to the CPU, and would start a JAX backend in each of grain's spawned worker processes. The
    scipy version has none of these costs and gives the same result (tested).

    Args:
      translation: largest translation in voxels, a scalar or one per spatial axis.
      rotation: largest rotation angle in radians, a scalar or one per angle (1 in 2D, 3 in 3D).
      scaling: largest relative change of size, in [0, 1), a scalar or one per spatial axis.
      prob: probability of transforming a record at all.
      mode: ``"border"`` (clamp to the edge voxel, :func:`jaxseg.geometry.warp`'s default) or
        ``"zeros"`` (0 outside the volume, for image and label).
    """

    def __init__(
        self,
        translation: float | Sequence[float] = 0.0,
        rotation: float | Sequence[float] = 0.0,
        scaling: float | Sequence[float] = 0.0,
        *,
        prob: float = 1.0,
        mode: str = "border",
    ):
        self.translation = np.atleast_1d(np.asarray(translation, np.float64))
        self.rotation = np.atleast_1d(np.asarray(rotation, np.float64))
        self.scaling = np.atleast_1d(np.asarray(scaling, np.float64))
        for name, value in (
            ("translation", self.translation),
            ("rotation", self.rotation),
            ("scaling", self.scaling),
        ):
            if value.ndim != 1 or not np.all(np.isfinite(value)) or np.any(value < 0):
                raise ValueError(f"{name} must be non-negative numbers, got {value}")
        if np.any(self.scaling >= 1):
            raise ValueError(f"scaling must lie in [0, 1), got {self.scaling}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must lie in [0, 1], got {prob}")
        if mode not in ("border", "zeros"):
            raise ValueError(f"mode must be 'border' or 'zeros', got {mode!r}")
        self.prob = float(prob)
        self.mode = mode

    def __repr__(self) -> str:
        return (
            f"RandomAffine(translation={self.translation.tolist()}, "
            f"rotation={self.rotation.tolist()}, scaling={self.scaling.tolist()}, "
            f"prob={self.prob}, mode={self.mode!r})"
        )

    def sample_matrix(self, rng: np.random.Generator, ndim: int) -> np.ndarray:
        """Draw one ``(N+1, N+1)`` matrix ``S R T`` for ``N = ndim`` in {2, 3} from ``rng``."""
        if ndim not in (2, 3):
            raise ValueError(f"RandomAffine works on 2 or 3 spatial axes, got {ndim}")
        n_angles = 1 if ndim == 2 else 3
        bounds = {}
        for name, value, size in (
            ("translation", self.translation, ndim),
            ("rotation", self.rotation, n_angles),
            ("scaling", self.scaling, ndim),
        ):
            if value.size not in (1, size):
                raise ValueError(f"{name} must be a scalar or {size} numbers, got {value}")
            bounds[name] = np.broadcast_to(value, (size,))
        translation = rng.uniform(-bounds["translation"], bounds["translation"])
        angles = rng.uniform(-bounds["rotation"], bounds["rotation"])
        scale = rng.uniform(1 - bounds["scaling"], 1 + bounds["scaling"])
        eye = np.eye(ndim + 1)
        shift, rotate, stretch = eye.copy(), eye.copy(), eye.copy()
        shift[:ndim, ndim] = translation
        rotate[:ndim, :ndim] = _rotation(angles)
        stretch[:ndim, :ndim] = np.diag(scale)
        return stretch @ rotate @ shift

    def apply(self, element: Record, matrix: np.ndarray) -> Record:
        """Resample ``element`` with the homogeneous ``matrix`` (see the class docstring)."""
        shape = spatial_shape(element)
        ndim = len(shape)
        linear, offset = matrix[:ndim, :ndim], matrix[:ndim, ndim]
        centre = (np.array(shape) - 1) / 2
        offset = offset + centre - linear @ centre
        mode = "nearest" if self.mode == "border" else "constant"
        image = element["image"]
        out_image = np.empty(image.shape, np.float32)
        for channel in range(image.shape[-1]):
            ndimage.affine_transform(
                image[..., channel],
                linear,
                offset,
                output=out_image[..., channel],
                order=1,
                mode=mode,
            )
        out = {**element, "image": out_image}
        if element.get("label") is not None:
            out["label"] = ndimage.affine_transform(
                element["label"], linear, offset, output=np.int32, order=0, mode=mode
            )
        return out

    def random_map(self, element: Record, rng: np.random.Generator) -> Record:
        """Transform ``element`` with probability ``prob`` (image order 1, label order 0)."""
        if self.prob < 1.0 and rng.random() >= self.prob:
            return element
        return self.apply(element, self.sample_matrix(rng, len(spatial_shape(element))))


class RandomChannelShift(grain.transforms.RandomMap):
    """Translate some image channels alone by a random whole number of voxels.

    Draws an integer offset ``t_i`` uniformly in ``[-translation_i, translation_i]`` per spatial
    axis and moves the ``channels`` of the image by it (``out[x + t] = in[x]``); voxels moved in
    from outside get ``fill``. The other channels and the label are unchanged, so the shifted
    channels lose their alignment with them: STIPPLE's simulation of an imperfectly positioned
    prior (its Appendix B), applied to the prior channel before the joint augmentation.

    Args:
      channels: indices of the image channels to shift.
      translation: largest shift in voxels, a non-negative int or one per spatial axis.
      fill: value of the voxels shifted in.
    """

    def __init__(
        self, channels: Sequence[int], translation: int | Sequence[int], *, fill: float = 0.0
    ):
        self.channels = tuple(int(c) for c in channels)
        self.translation = np.atleast_1d(np.asarray(translation))
        if not np.issubdtype(self.translation.dtype, np.integer) or np.any(self.translation < 0):
            raise ValueError(f"translation must be non-negative ints, got {translation!r}")
        self.fill = float(fill)

    def __repr__(self) -> str:
        return (
            f"RandomChannelShift(channels={self.channels}, "
            f"translation={self.translation.tolist()}, fill={self.fill})"
        )

    def random_map(self, element: Record, rng: np.random.Generator) -> Record:
        """Shift the ``channels`` of ``element``'s image ``(*S, C)``."""
        image = element["image"]
        shape = spatial_shape(element)
        if self.translation.size not in (1, len(shape)):
            raise ValueError(
                f"record {element.get('id')!r}: translation {self.translation.tolist()} for "
                f"{len(shape)} spatial axes"
            )
        bound = np.broadcast_to(self.translation, (len(shape),))
        offset = rng.integers(-bound, bound + 1)
        target = tuple(slice(max(t, 0), n + min(t, 0)) for t, n in zip(offset, shape))
        source = tuple(slice(max(-t, 0), n + min(-t, 0)) for t, n in zip(offset, shape))
        out = image.copy()
        for channel in self.channels:
            moved = np.full(shape, self.fill, image.dtype)
            moved[target] = image[(*source, channel)]
            out[..., channel] = moved
        return {**element, "image": out}


def default_transforms(patch: Sequence[int] | None) -> tuple[Transform, ...]:
    """The LA papers' training augmentation: ``(RandomRotFlip(), RandomCrop(patch))``.

    With ``patch=None`` (whole volumes), no transform. Normalisation is not included: the LA
    volumes are stored normalised, and the CT readers window and z-score on reading.
    """
    if patch is None:
        return ()
    return (RandomRotFlip(), RandomCrop(patch))
