"""The package as a user installs it: a wheel built from a copy of the checkout, installed into a
fresh virtual environment (no network: ``--no-deps --no-build-isolation --no-index``; the
dependencies come from this interpreter's site-packages), then run from a directory outside the
checkout."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900


def _run(args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _copy_checkout(dest: Path) -> None:
    """Copy the files git tracks or would track (not ignored ones) of the checkout to ``dest``."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout of jaxseg")
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a deleted, not yet committed file is still listed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(python, jaxseg command, a working directory outside the checkout)`` of a fresh
    virtual environment with jaxseg installed from a wheel of a copy of the checkout."""
    base = tmp_path_factory.mktemp("install")
    before = sorted(p.name for p in ROOT.iterdir())
    source, venv, work = base / "source", base / "venv", base / "work"
    work.mkdir()
    _copy_checkout(source)
    # The wheel is built by this interpreter's setuptools (a fresh environment's bundled one may
    # be too old to build wheels without the ``wheel`` package), then installed in the new one.
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    _run([sys.executable, "-m", "pip", "wheel", *offline, "-w", base / "dist", source], cwd=work)
    (wheel,) = (base / "dist").glob("jaxseg-*.whl")
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=work)
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", *offline, wheel], cwd=work)
    assert sorted(p.name for p in ROOT.iterdir()) == before, "the build wrote into the checkout"
    return python, venv / "bin" / "jaxseg", work


def test_the_installed_package_is_imported_from_the_environment(installed):
    python, _, work = installed
    code = "import jaxseg, jaxseg.bench, jaxseg.configs; print(jaxseg.__file__)"
    location = Path(_run([python, "-c", code], cwd=work).stdout.strip())
    assert location.is_relative_to(python.parents[1]), location
    assert not location.is_relative_to(ROOT)
    splits = location.parent / "data" / "splits"
    assert {p.name for p in splits.glob("*.list")} == {"la_train.list", "la_test.list"}


def test_configs_lists_the_shipped_configs(installed):
    _, jaxseg, work = installed
    assert "sassnet" in _run([jaxseg, "configs"], cwd=work).stdout


def test_train_runs_a_shipped_config(installed):
    _, jaxseg, work = installed
    run_dir = work / "run"
    args = ["sassnet:smoke", "--workdir", run_dir, "--set", "train.steps=2", "--no-progress"]
    _run([jaxseg, "train", *args], cwd=work)
    assert json.loads((run_dir / "config.json").read_text())["train"]["steps"] == 2
    assert (run_dir / "metrics.jsonl").read_text().strip()


def test_the_smoke_benchmark_runs_from_the_installed_package(installed):
    _, jaxseg, work = installed
    out = work / "bench"
    _run([jaxseg, "bench", "--suite", "smoke", "--out", out], cwd=work)
    platform = jax.devices()[0].platform
    files = {f"smoke-{platform}.{ext}" for ext in ("json", "md", "png")}
    assert {p.name for p in out.iterdir()} == files
    assert len(json.loads((out / f"smoke-{platform}.json").read_text())["rows"]) == 6
