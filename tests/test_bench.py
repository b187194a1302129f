"""jaxseg.bench: the smoke suite through the harness, the output files and where they go."""

import importlib
import json
import math
import pkgutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import jaxseg.bench
from jaxseg.bench import SUITES, harness, run_suites, smoke

PLATFORM = jax.devices()[0].platform


def _strict_json(path: Path):
    """The parsed file; NaN or Infinity (not JSON) raise."""

    def reject(constant):
        raise ValueError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


def _tree(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke suite run from an empty working directory with ``out`` elsewhere: its exit
    status, the output directory and the working directory."""
    cwd, out = tmp_path_factory.mktemp("cwd"), tmp_path_factory.mktemp("base") / "results"
    package = _tree(Path(jaxseg.bench.__file__).parent)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        status = run_suites(["smoke"], out=out)
    assert _tree(Path(jaxseg.bench.__file__).parent) == package
    return status, out, cwd


def test_smoke_suite_writes_json_with_the_device_and_finite_timings(smoke_run):
    status, out, _ = smoke_run
    assert status == 0
    result = _strict_json(out / f"smoke-{PLATFORM}.json")
    assert result["suite"] == "smoke" and result["quick"] is False
    device = result["device"]
    assert device["platform"] == PLATFORM and device["usable_cpus"] >= 1
    assert {"jaxseg", "jax", "jaxlib", "flax", "numpy"} <= set(device["packages"])
    names = [row["name"] for row in result["rows"]]
    assert names == [
        "copy 3-channel 16x16x16",
        "warp 3-channel 16x16x16",
        "integrate_svf 7 steps 16x16x16",
        "sdm 16x16x16",
        "hd95+asd 16x16x16",
        "supervised iteration 2x16x16x16 (smoke)",
    ]
    for row in result["rows"]:
        timing = row["ours"]
        assert timing["repeats"] == 3
        assert 0 < timing["min_s"] <= timing["median_s"] <= timing["max_s"] < 60, row["name"]
        if "peer_timing" in row:
            speedup = row["peer_timing"]["median_s"] / timing["median_s"]
            assert math.isclose(row["speedup"], speedup), row["name"]
    assert result["rows"][-1]["iterations_per_s"] == pytest.approx(
        1 / result["rows"][-1]["ours"]["median_s"]
    )


def test_smoke_suite_writes_a_markdown_table_beside_the_json(smoke_run):
    _, out, _ = smoke_run
    text = (out / f"smoke-{PLATFORM}.md").read_text()
    rows = _strict_json(out / f"smoke-{PLATFORM}.json")["rows"]
    lines = text.splitlines()
    assert lines[0] == f"# smoke on {PLATFORM}"
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| row | jaxseg | peer |")
    assert [line.split(" | ")[0][2:] for line in table[2:]] == [row["name"] for row in rows]


def test_results_go_only_to_out(smoke_run):
    _, out, cwd = smoke_run
    assert _tree(out) == {f"smoke-{PLATFORM}.{ext}" for ext in ("json", "md", "png")}
    assert _tree(cwd) == set()


def _fake_rows(target):
    return [harness.compare("noop", lambda: 1, lambda: 1, peer_name="noop", target=target)]


@pytest.mark.parametrize("target,status", [(None, 0), (1e9, 1)])
def test_without_out_nothing_is_written_and_a_missed_target_fails(
    tmp_path, monkeypatch, capsys, target, status
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(smoke, "run", lambda quick: _fake_rows(target))
    assert run_suites(["smoke"]) == status
    assert "results not saved" in capsys.readouterr().out
    assert _tree(tmp_path) == set()


def test_a_target_without_its_peer_is_not_measured(monkeypatch, capsys):
    """A missing peer package leaves the ratio unmeasured: neither met nor missed (status 0)."""
    row = harness.compare("noop", lambda: 1, None, peer_name="absent", target=2.0)
    assert row["meets_target"] is None and "speedup" not in row
    monkeypatch.setattr(smoke, "run", lambda quick: [row])
    assert run_suites(["smoke"]) == 0
    assert "target x2: not measured, no peer" in capsys.readouterr().out
    table = harness.markdown_table("s", [row], harness.device_info())
    assert "| x2, not measured, no peer |" in table


def test_unknown_suites_run_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(smoke, "run", lambda quick: pytest.fail("ran a suite"))
    assert run_suites(["smoke", "nosuch"], out=tmp_path) == 2
    assert "nosuch" in capsys.readouterr().out
    assert _tree(tmp_path) == set()


def test_non_finite_values_are_saved_as_null(tmp_path):
    rows = _fake_rows(None)
    rows[0]["value"] = float("nan")
    path = harness.save("fake", rows, directory=tmp_path / "new", quick=True)
    assert path == tmp_path / "new" / f"fake-{PLATFORM}.json"
    saved = _strict_json(path)
    assert saved["quick"] is True and saved["rows"][0]["value"] is None


def test_every_suite_module_is_listed_and_runnable():
    modules = {m.name for m in pkgutil.iter_modules(jaxseg.bench.__path__)}
    assert modules - {"harness", "__main__"} == set(SUITES)
    assert "smoke" not in jaxseg.bench.DEFAULT_SUITES
    for name in SUITES:
        module = importlib.import_module(f"jaxseg.bench.{name}")
        assert callable(module.run), name


def test_command_line_rejects_an_unknown_suite(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "jaxseg.bench", "--out", "res", "nosuch"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "available" in done.stdout and "smoke" in done.stdout
    assert _tree(tmp_path) == set()


def test_device_script_dry_run_writes_json_table_and_plot_and_refuses_the_cpu(tmp_path):
    """benchmarks/device.sh --dry-run: the steps of the accelerator run (dependencies, device,
    suites under a time budget) with the smoke suite on the CPU; without --dry-run on a CPU it
    refuses (its figures are meant to be an accelerator's)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "device.sh"
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(script), "--dry-run", str(out)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = _strict_json(out / f"smoke-{PLATFORM}.json")
    assert result["quick"] is True and len(result["rows"]) == 6
    assert (out / f"smoke-{PLATFORM}.md").read_text().startswith(f"# smoke on {PLATFORM}")
    assert (out / f"smoke-{PLATFORM}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if PLATFORM == "cpu":
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
        assert done.returncode == 2 and "no accelerator found" in done.stderr


@pytest.mark.parametrize("name", ["sassnet", "dtml"])
def test_the_reference_step_peer_starts_from_the_weights_of_the_paper_networks(name):
    """The methods suite's PyTorch peer: its networks are those of the method's paper config
    (the imported weights fit jaxseg's state exactly) and one reference iteration runs on the
    suite's batch."""
    pytest.importorskip("torch")
    import functools

    import numpy as np

    from jaxseg.bench import methods

    inputs = methods.batch(2, 2, (16, 16, 16))
    iteration, weights = methods.reference_peer(name, inputs)
    method = methods.METHODS[name]
    create = functools.partial(method.create_state, method.default_config("paper"))
    state = jax.eval_shape(create, jax.random.key(0))
    for net, variables in weights.items():
        expected = {"params": state.nets[net].params}
        if state.nets[net].batch_stats:
            expected["batch_stats"] = state.nets[net].batch_stats
        assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, expected)
    assert set(weights) == set(state.nets)
    logged = iteration()
    assert (
        all(math.isfinite(v) for v in logged.values())
        and logged["loss_dice" if name == "sassnet" else "loss_seg"] > 0
    )


def test_monai_averages_the_windows_of_jaxseg_at_the_overlap_the_inference_suite_gives():
    """The inference suite's MONAI peer gets jaxseg's strides through an overlap fraction:
    MONAI's own window placement must then give jaxseg's windows on every axis."""
    pytest.importorskip("monai")
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    from jaxseg.inference import window_starts

    for size, patch, stride in [(192, 112, 18), (88, 80, 4), (512, 112, 56), (300, 80, 40),
                                (97, 64, 7), (64, 64, 1), (130, 112, 37)]:  # fmt: skip
        overlap = 1.0 - (stride + 0.5) / patch
        interval = _get_scan_interval((size,), (patch,), 1, (overlap,))
        starts = [s[0].start for s in dense_patch_slices((size,), (patch,), interval)]
        assert starts == window_starts(size, patch, stride), (size, patch, stride)
