"""Timing and reporting shared by the benchmark suites.

Every timing is the median over ``repeats`` calls after ``warmup`` untimed calls (which also
absorb JIT compilation). JAX results are blocked on before the clock stops. Each suite returns
rows (dicts); :func:`save` writes them with a description of the machine to
``benchmarks/results/<suite>-<platform>.json``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _block(out: Any) -> Any:
    return jax.block_until_ready(out)


def measure(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 7) -> dict[str, float]:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        _block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": repeats,
    }


def measure_train_step(
    step_fn: Callable[..., Any], state: Any, batch: Any, *, warmup: int = 2, repeats: int = 7
) -> dict[str, float]:
    """:func:`measure` of a method's training iterations: ``step_fn`` (a method's
    ``make_train_step``) jitted with donation as in the training loop, each call continuing from
    the state of the previous one with its step key."""
    from jaxseg.train import jit_step, step_key

    step = jit_step(step_fn)
    holder = {"state": state}

    def iteration():
        new, metrics = step(holder["state"], batch, step_key(holder["state"]))
        holder["state"] = new
        return metrics["loss"]

    return measure(iteration, warmup=warmup, repeats=repeats)


def compare(
    name: str,
    ours: Callable[[], Any],
    peer: Callable[[], Any] | None,
    *,
    peer_name: str,
    target: float | None = None,
    warmup: int = 2,
    repeats: int = 7,
    **extra: Any,
) -> dict[str, Any]:
    """Time ``ours`` and ``peer`` in the same run; ``speedup`` = peer / ours.

    ``target`` is the speed-up the row must reach; ``meets_target`` records whether it did.
    ``peer`` may be None when the peer package is not installed (the row then has no ratio).
    """
    row: dict[str, Any] = {"name": name, "peer": peer_name, **extra}
    row["ours"] = measure(ours, warmup=warmup, repeats=repeats)
    if peer is not None:
        row["peer_timing"] = measure(peer, warmup=warmup, repeats=repeats)
        row["speedup"] = row["peer_timing"]["median_s"] / row["ours"]["median_s"]
    if target is not None:
        row["target_speedup"] = target
        row["meets_target"] = bool(row.get("speedup", 0.0) >= target)
    return row


def cpu_threads() -> int:
    """CPU cores this process may use (the thread count given to peers such as PyTorch)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def device_info() -> dict[str, Any]:
    """The machine, JAX backend and peer package versions the numbers were measured on."""
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": cpu_threads(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "packages": _versions(("scipy", "scikit-image", "medpy", "torch", "monai")),
    }


def save(suite: str, rows: list[dict[str, Any]], *, directory: Path | None = None) -> Path:
    """Write ``rows`` with :func:`device_info` to ``<directory>/<suite>-<platform>.json``."""
    info = device_info()
    directory = RESULTS_DIR if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{suite}-{info['platform']}.json"
    tmp = path.with_suffix(".json.tmp")
    payload = {
        "suite": suite,
        "device": info,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": rows,
    }
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def format_row(row: dict[str, Any]) -> str:
    """One human-readable line for a result row."""
    text = f"{row['name']:<48} ours {row['ours']['median_s'] * 1e3:9.1f} ms"
    if "peer_timing" in row:
        text += (
            f" | {row['peer']} {row['peer_timing']['median_s'] * 1e3:9.1f} ms"
            f" | x{row['speedup']:.2f}"
        )
    if "target_speedup" in row:
        text += f" (target x{row['target_speedup']:g}: {'ok' if row['meets_target'] else 'MISSED'})"
    return text


def suite_names() -> list[str]:
    """The suites: every module of this package but the harness itself."""
    here = Path(__file__).resolve().parent
    return sorted(
        p.stem for p in here.glob("*.py") if p.stem not in ("__init__", "__main__", "harness")
    )


def run_suites(names: list[str] | None = None, *, quick: bool = False) -> int:
    """Run suites by name (all when None), print their rows and save them; exit status.

    The status is 1 when a row misses its target, 2 for an unknown suite, else 0.
    """
    available = suite_names()
    names = names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"unknown suite(s) {unknown}; available: {available}")
        return 2
    print(f"device: {device_info()}")
    missed = False
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        rows = module.run(quick=quick)
        print(f"[{name}]")
        for row in rows:
            print("  " + format_row(row))
            missed |= row.get("meets_target") is False
        print(f"  saved {save(name, rows)}")
    return 1 if missed else 0


def main(suite: str) -> None:
    """Command-line entry of one suite: ``python -m benchmarks.<suite> [--quick]``."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{suite}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    raise SystemExit(run_suites([suite], quick=parser.parse_args().quick))
