"""The ``jaxseg`` command: help, planned commands, and the demo end to end."""

import json
import subprocess
import sys

import pytest

from jaxseg.cli import build_parser, main

COMMANDS = ["demo", "train", "evaluate", "predict", "bench", "data"]


def test_help_lists_the_commands_of_the_design():
    text = build_parser().format_help()
    for command in COMMANDS:
        assert command in text


def test_console_script_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "jaxseg.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "demo" in out and "bench" in out


@pytest.mark.parametrize("argv", [["train", "cfg.py", "--workdir", "x"], ["data", "check", "d"]])
def test_unavailable_commands_exit_2_with_a_message(argv, capsys):
    assert main(argv) == 2
    assert "not available" in capsys.readouterr().err


def test_bench_outside_a_checkout_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench"]) == 2
    assert "benchmarks/" in capsys.readouterr().err


def test_demo_writes_metrics_and_figures(tmp_path):
    workdir = tmp_path / "demo"
    assert main(["demo", "--workdir", str(workdir), "--size", "32"]) == 0
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
