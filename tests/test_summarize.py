"""experiments/summarize.py: multi-seed tables from seeds.json or per-seed re-evaluations."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def summarize():
    spec = importlib.util.spec_from_file_location("summarize", ROOT / "experiments/summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def runs(tmp_path):
    dice = {"base": [0.80, 0.90, 0.70], "ours": [0.83, 0.88, 0.75]}
    for method, values in dice.items():
        per_seed = {
            str(s): {"dice": d, "jaccard": d, "hd95": 1.0, "asd": 1.0} for s, d in enumerate(values)
        }
        _write(tmp_path / method / "seeds.json", {"seeds": [0, 1, 2], "per_seed": per_seed})
        for seed, d in enumerate(values):
            mean = {"dice": d - 0.1, "jaccard": d, "hd95": 2.0, "asd": 2.0}
            _write(tmp_path / method / f"seed_{seed}" / "eval_x" / "metrics.json", {"mean": mean})
    return tmp_path


def test_paired_differences_seed_by_seed(summarize, runs):
    text = summarize.paired(summarize.load(runs), "base")
    row = next(line for line in text.splitlines() if line.startswith("| ours"))
    # 0.83 - 0.80, 0.88 - 0.90, 0.75 - 0.70 in points; mean 2.0, population std of (3, -2, 5).
    assert "+3.0, -2.0, +5.0" in row
    assert f"+2.00 ± {((1**2 + 4**2 + 3**2) / 3) ** 0.5:.2f}" in row
    assert "2 of 3" in row
    with pytest.raises(SystemExit, match="no such method"):
        summarize.paired(summarize.load(runs), "missing")


def test_per_seed_reevaluations(summarize, runs, tmp_path):
    summaries = summarize.load(runs, "eval_x")
    assert summaries["ours"]["seeds"] == ["0", "1", "2"]
    assert summaries["ours"]["per_seed"]["2"]["dice"] == pytest.approx(0.65)
    assert "| base | 3 | 70.00 ± 8.16 |" in summarize.table(summaries)
    with pytest.raises(SystemExit, match=r"seed_<s>/missing/metrics\.json"):
        summarize.load(runs, "missing")
    summarize.figure(summaries, tmp_path / "fig.png", "test Dice")
    assert (tmp_path / "fig.png").stat().st_size > 1000


def test_voxel_columns_and_training_minutes(summarize, runs):
    for seed, seconds in enumerate([600.0, 900.0, 1200.0]):
        rows = [{"step": 10, "wall_time": 1.0}, {"step": 20, "wall_time": seconds}]
        path = runs / "base" / f"seed_{seed}" / "metrics.jsonl"
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    summaries = summarize.load(runs)
    for method in summaries.values():
        for seed in method["per_seed"].values():
            seed.update(hd95_voxels=4.0, asd_voxels=1.5)
    text = summarize.table(summaries, summarize.METRICS + summarize.VOXELS, runs)
    assert "95HD (voxels) | ASD (voxels) | train min / run |" in text.splitlines()[0]
    base = next(line for line in text.splitlines() if line.startswith("| base"))
    # 10, 15 and 20 minutes: mean 15, population std sqrt(50 / 3).
    assert base.endswith(f"| 4.00 ± 0.00 | 1.50 ± 0.00 | 15.00 ± {(50 / 3) ** 0.5:.2f} |")
