"""The ``jaxseg`` command: help, data check, bench, and the demo end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxseg.cli import build_parser, main

COMMANDS = ["demo", "configs", "train", "evaluate", "predict", "bench", "data"]


def test_help_lists_the_commands_of_the_design():
    text = build_parser().format_help()
    for command in COMMANDS:
        assert command in text


def test_console_script_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "jaxseg.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "demo" in out and "bench" in out


def test_data_check_reports_an_unknown_layout(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "layout" in capsys.readouterr().err


def test_data_check_flags_a_bad_case(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "letters"
    (root / "clean").mkdir(parents=True)
    image = np.zeros((16, 16), np.uint8)
    label = np.zeros((16, 16), np.uint8)
    label[4:9, 4:9] = 255
    Image.fromarray(image).save(root / "clean" / "B1_img.png")
    Image.fromarray(label).save(root / "clean" / "B1_seg.png")
    (root / "clean" / "B2_img.png").write_bytes(b"not a png")
    Image.fromarray(label).save(root / "clean" / "B2_seg.png")
    (root / "train.csv").write_text(
        "img\ndata/synth2d/clean/B1_img.png\ndata/synth2d/clean/B2_img.png\n"
    )
    (root / "train.seg.csv").write_text(
        "img\ndata/synth2d/clean/B1_seg.png\ndata/synth2d/clean/B2_seg.png\n"
    )
    report = tmp_path / "report.json"
    assert main(["data", "check", str(root), "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert "B2_img.png" in out
    assert json.loads(report.read_text())


def test_bench_names_an_unknown_suite_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--suite", "nosuch", "--out", str(tmp_path / "out")]) == 2
    assert "nosuch" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_demo_writes_metrics_and_figures(tmp_path):
    workdir = tmp_path / "demo"
    argv = ["demo", "--workdir", str(workdir), "--size", "32", "--train-steps", "2"]
    assert main(argv) == 0
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["inverse_consistency"]["mice"] < 0.05
    assert metrics["inverse_consistency"]["ic_dice"] > 0.95
    assert metrics["folding_fraction"] == 0.0
    assert 0.5 < metrics["warped_vs_original"]["dice"] < 1.0
    assert metrics["sdm_range"] == [-1.0, 1.0]
    assert metrics["sdm_round_trip_dice"] == 1.0
    for name in metrics["figures"]:
        png = (workdir / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # Part 2: the SASSNet run, its evaluation and figures.
    run = workdir / "sassnet"
    result = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["sassnet"]["test"]["dice"] == result["mean"]["dice"]
    assert len(result["cases"]) == 2 and 0.0 <= result["mean"]["dice"] <= 1.0
    assert (run / "figures" / "curves.png").is_file()
    assert len(list((run / "eval" / "figures").glob("*.png"))) == 3


def test_configs_lists_the_shipped_configs_with_their_settings(capsys):
    from jaxseg.methods import get_method

    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert {"supervised", "sassnet", "dtml"} <= set(names)
    for name in names:
        # Every listed name loads as NAME:smoke into a config of a registered method.
        from jaxseg.train.config import load_config

        config = load_config(f"{name}:smoke")
        assert get_method(config.method).name == config.method
