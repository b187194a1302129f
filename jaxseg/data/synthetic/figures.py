"""Sample figures and timing of the generators: ``python -m jaxseg.data.synthetic``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxseg.data.synthetic import GENERATORS, dataset, letter_b


def _centre_slice(label: np.ndarray, axis: int) -> int:
    where = np.nonzero(label)
    if not where[0].size:
        return label.shape[axis] // 2
    return int(np.round(where[axis].mean()))


def save_sample_figures(
    directory: str | Path,
    *,
    n: int = 4,
    seed: int = 0,
    options: dict[str, dict] | None = None,
) -> list[Path]:
    """Write one PNG per generator with ``n`` samples (seeds ``seed .. seed + n - 1``).

    3D cases show an axial slice (axis 2) and a coronal slice (axis 1) through the label's
    centre with the label contours; CT-like images use the [-160, 300] HU window (cardiac:
    [-200, 500]); the letter-B figure shows clean and corrupted versions of the same seeds.
    ``options`` maps a generator name to keyword arguments for it (e.g. a smaller ``shape``).

    Returns:
      the paths written: ``la_like.png``, ``abdominal_ct_like.png``, ``cardiac_like.png``,
      ``letter_b.png`` under ``directory``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    options = options or {}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    colors = ["#e41a1c", "#ffd92f", "#4daf4a", "#377eb8", "#f781bf"]
    windows = {"la_like": None, "abdominal_ct_like": (-160, 300), "cardiac_like": (-200, 500)}
    written = []
    for name, window in windows.items():
        cases = dataset(name, n, seed=seed, **options.get(name, {}))
        fig, axes = plt.subplots(2, n, figsize=(3 * n, 6.2), squeeze=False)
        for j, case in enumerate(cases):
            image, label = case.image[..., 0], case.label
            for row, axis in enumerate((2, 1)):
                k = _centre_slice(label, axis)
                img = np.take(image, k, axis=axis).T
                lab = np.take(label, k, axis=axis).T
                sp = [s for i, s in enumerate(case.spacing) if i != axis]
                vmin, vmax = window or np.percentile(image, [1, 99])
                ax = axes[row, j]
                ax.imshow(
                    img,
                    cmap="gray",
                    vmin=vmin,
                    vmax=vmax,
                    origin="lower" if row else "upper",
                    aspect=sp[1] / sp[0],
                    interpolation="nearest",
                )
                for v in range(1, int(label.max()) + 1):
                    if (lab == v).any():
                        ax.contour(lab == v, levels=[0.5], colors=colors[v - 1], linewidths=0.8)
                ax.set_title(f"{case.id} {'axial' if axis == 2 else 'coronal'} {k}", fontsize=8)
                ax.set_axis_off()
        fig.suptitle(f"{name}: image with label contours", fontsize=10)
        fig.tight_layout()
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    fig, axes = plt.subplots(3, n, figsize=(2.6 * n, 8), squeeze=False)
    for j in range(n):
        kwargs = options.get("letter_b", {})
        clean = letter_b(seed + j, **kwargs)
        dirty = letter_b(seed + j, **{**kwargs, "corrupt": True})
        for row, (img, title) in enumerate(
            ((clean.image, clean.id), (dirty.image, dirty.id), (clean.label, "label"))
        ):
            axes[row, j].imshow(np.squeeze(img), cmap="gray", vmin=0, vmax=1)
            axes[row, j].set_title(title, fontsize=8)
            axes[row, j].set_axis_off()
    fig.suptitle("letter_b: clean, corrupted (same seed), label", fontsize=10)
    fig.tight_layout()
    path = directory / "letter_b.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written


def _time_generators(repeats: int) -> None:
    for name, fn in GENERATORS.items():
        start = time.perf_counter()
        fn(0)
        first = time.perf_counter() - start
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            fn(i + 1)
            times.append(time.perf_counter() - start)
        print(
            f"{name}: first call (with compilation) {first:.2f} s, "
            f"median of {repeats} {np.median(times):.3f} s"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m jaxseg.data.synthetic", description="Synthetic phantoms: figures, timing."
    )
    parser.add_argument("--figures", metavar="DIR", help="write sample figures into DIR")
    parser.add_argument("--n", type=int, default=4, help="samples per figure")
    parser.add_argument("--time", action="store_true", help="time each generator (defaults)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per generator")
    args = parser.parse_args(argv)
    if not args.figures and not args.time:
        parser.error("nothing to do: pass --figures DIR and/or --time")
    if args.figures:
        for path in save_sample_figures(args.figures, n=args.n):
            print(path)
    if args.time:
        _time_generators(args.repeats)
