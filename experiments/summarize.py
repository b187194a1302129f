"""Summarise multi-seed runs (``jaxseg train ... --seeds``) of several methods.

Usage: python experiments/summarize.py RUNS_DIR [--output FIGURE.png] [--paired METHOD]
                                      [--eval NAME] [--voxels] [--minutes]

RUNS_DIR holds one directory per method, each with the ``seeds.json`` of the multi-seed runner;
with ``--eval NAME`` the per-seed results are read from ``<method>/seed_<s>/NAME/metrics.json``
instead (e.g. a re-evaluation under another protocol, ``jaxseg evaluate --output``).
Prints a Markdown table (mean +- standard deviation over seeds of the per-seed test means; Dice
and Jaccard in %, HD95 and ASD in mm; ``--voxels`` adds them in voxels, the LA papers' unit;
``--minutes`` the training wall time per run, the last ``wall_time`` of its ``metrics.jsonl``)
and writes a figure of every seed's test Dice per method.
``--paired METHOD`` also prints each method's test Dice minus METHOD's, seed by seed. A method
and its ablations (the same config with ``--set ...``) started from the same seed share their
initial weights, so their paired differences show effects that the spread between seeds hides;
different methods draw their networks' weights differently from a seed, and their pairing only
matches seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

METRICS = (("dice", "Dice (%)", 100), ("jaccard", "Jaccard (%)", 100), ("hd95", "95HD (mm)", 1))
METRICS += (("asd", "ASD (mm)", 1),)
VOXELS = (("hd95_voxels", "95HD (voxels)", 1), ("asd_voxels", "ASD (voxels)", 1))


def load(runs: Path, eval_dir: str | None = None) -> dict[str, dict]:
    found = {}
    if eval_dir is None:
        for path in sorted(runs.glob("*/seeds.json")):
            found[path.parent.name] = json.loads(path.read_text())
    else:
        for method in sorted(p for p in runs.iterdir() if p.is_dir()):
            per_seed = {}
            for path in method.glob(f"seed_*/{eval_dir}/metrics.json"):
                seed = path.parent.parent.name.removeprefix("seed_")
                per_seed[seed] = json.loads(path.read_text())["mean"]
            if per_seed:
                per_seed = dict(sorted(per_seed.items(), key=lambda kv: int(kv[0])))
                found[method.name] = {"seeds": list(per_seed), "per_seed": per_seed}
    if not found:
        where = "seeds.json" if eval_dir is None else f"seed_<s>/{eval_dir}/metrics.json"
        raise SystemExit(f"{runs}: no <method>/{where} found")
    return found


def train_minutes(runs: Path, method: str, seeds: list[str]) -> np.ndarray:
    """Training wall time (minutes) of each seed's run: the last ``wall_time`` it logged."""
    minutes = []
    for seed in seeds:
        path = runs / method / f"seed_{seed}" / "metrics.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        times = [row["wall_time"] for row in rows if "wall_time" in row]
        minutes.append(times[-1] / 60 if times else np.nan)
    return np.array(minutes, float)


def table(summaries: dict[str, dict], metrics=METRICS, runs: Path | None = None) -> str:
    """The Markdown table; with ``runs``, a last column of training minutes per run."""
    labels = [label for _, label, _ in metrics] + (["train min / run"] if runs else [])
    head = "| method | seeds | " + " | ".join(labels) + " |"
    lines = [head, "|" + " --- |" * (len(labels) + 2)]
    for method, s in summaries.items():
        columns = [np.array([v[key] for v in s["per_seed"].values()], float) * scale
                   for key, _, scale in metrics]  # fmt: skip
        if runs:
            columns.append(train_minutes(runs, method, list(s["per_seed"])))
        cells = [
            f"{np.nanmean(values):.2f} ± {np.nanstd(values):.2f}" if np.isfinite(values).any()
            else "-"
            for values in columns
        ]  # fmt: skip
        lines.append(f"| {method} | {len(s['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(summaries: dict[str, dict], reference: str) -> str:
    if reference not in summaries:
        raise SystemExit(f"--paired {reference}: no such method (have {sorted(summaries)})")
    base = summaries[reference]["per_seed"]
    lines = [
        f"| method | seeds | Dice - {reference} (points) per seed | mean ± std | better in |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method, s in summaries.items():
        if method == reference:
            continue
        seeds = [seed for seed in s["per_seed"] if seed in base]
        if not seeds:
            continue
        diff = np.array([s["per_seed"][k]["dice"] - base[k]["dice"] for k in seeds]) * 100
        cells = ", ".join(f"{d:+.1f}" for d in diff)
        lines.append(
            f"| {method} | {len(seeds)} | {cells} | {diff.mean():+.2f} ± {diff.std():.2f} "
            f"| {int((diff > 0).sum())} of {len(seeds)} |"
        )
    return "\n".join(lines)


def figure(summaries: dict[str, dict], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.5 + 1.6 * len(summaries), 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, s in enumerate(summaries.values()):
        dice = np.array([v["dice"] for v in s["per_seed"].values()]) * 100
        ax.scatter(np.full(dice.shape, i), dice, s=25, zorder=3, label=None)
        ax.errorbar(i + 0.15, dice.mean(), yerr=dice.std(), fmt="s", color="k", capsize=4)
    ax.set_xticks(range(len(summaries)), list(summaries))
    ax.set_ylabel("test Dice (%), one dot per seed")
    ax.set_xlim(-0.5, len(summaries) - 0.5)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="directory of <method>/seeds.json")
    parser.add_argument("--output", type=Path, help="figure to write (PNG)")
    parser.add_argument("--paired", metavar="METHOD", help="also print Dice differences to METHOD")
    parser.add_argument(
        "--eval", metavar="NAME", help="read seed_<s>/NAME/metrics.json instead of seeds.json"
    )
    parser.add_argument("--voxels", action="store_true", help="add 95HD and ASD in voxels")
    parser.add_argument("--minutes", action="store_true", help="add training minutes per run")
    args = parser.parse_args()
    summaries = load(args.runs, args.eval)
    metrics = METRICS + (VOXELS if args.voxels else ())
    print(table(summaries, metrics, args.runs if args.minutes else None))
    if args.paired:
        print()
        print(paired(summaries, args.paired))
    if args.output:
        title = "test Dice" + (f" ({args.eval})" if args.eval else "")
        figure(summaries, args.output, title)
        print(f"written: {args.output}")


if __name__ == "__main__":
    main()
