"""Markdown tables of an Atlas-ISTN run's ``eval/metrics.json``.

    python experiments/atlas_istn/table.py RUN_DIR

One row per test set and output (ITN, 1-pass, refinement at each lambda): Dice, ASSD (the
symmetric average surface distance, the paper's "ASD"), Hausdorff (the paper's "HD") and HD95 in
pixels (mean ± std over the cases), then the inverse consistency (IC-Dice, MICE) and
subject-to-subject Dice of the 1-pass and refined transforms.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _cell(entry: dict, name: str, scale: float = 1.0, digits: int = 2) -> str:
    mean, std = entry["mean"].get(name), entry["std"].get(name)
    if mean is None:
        return "-"
    return f"{mean * scale:.{digits}f} ± {(std or 0.0) * scale:.{digits}f}"


def tables(metrics: dict) -> str:
    lines = [
        "| test set | output | Dice (%) | ASSD (px) | Hausdorff (px) | HD95 (px) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    sets = [name for name, entry in metrics.items() if isinstance(entry, dict) and "itn" in entry]
    for test_set in sets:
        for output, entry in metrics[test_set].items():
            if "mean" not in entry:
                continue
            lines.append(
                f"| {test_set} | {output} | {_cell(entry, 'dice', 100)} "
                f"| {_cell(entry, 'assd')} | {_cell(entry, 'hausdorff')} | {_cell(entry, 'hd95')} |"
            )
    lines += [
        "",
        "| test set | transform | IC-Dice (%) | MICE (px) | subject-to-subject Dice (%) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for test_set in sets:
        ic = metrics[test_set]["inverse_consistency"]
        s2s = metrics[test_set]["subject_to_subject"]["dice"]
        for transform in ic["ic_dice"]:
            lines.append(
                f"| {test_set} | {transform} | {100 * ic['ic_dice'][transform]:.2f} "
                f"| {ic['mice'][transform]:.3f} | {100 * (s2s[transform] or 0):.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    path = Path(argv[0]) / "eval" / "metrics.json"
    if not path.is_file():
        print(f"{path}: not found (train and evaluate the run first)", file=sys.stderr)
        return 2
    print(tables(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
