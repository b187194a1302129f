"""Timing and reporting shared by the benchmark suites.

Every timing is the median over ``repeats`` calls after ``warmup`` untimed calls (which also
absorb JIT compilation). JAX results are blocked on before the clock stops. Each suite module
``jaxseg.bench.<suite>`` has ``run(quick=False) -> list[dict]`` returning its rows;
:func:`run_suites` prints them and, only when given a directory ``out``, writes
``<out>/<suite>-<platform>.json`` (the rows with :func:`device_info`) and
``<out>/<suite>-<platform>.md`` (a Markdown table of them). Nothing is written anywhere else, so
the suites run the same from a checkout, from an installed package and from any working
directory.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxseg.atomic import write_text
from jaxseg.train.evaluate import json_safe

#: Every suite, by module name in :mod:`jaxseg.bench`. ``smoke`` (tiny sizes, seconds) runs only
#: when named; the others are :data:`DEFAULT_SUITES`.
SUITES = ("smoke", "sdm", "metrics", "svf", "scaling", "nets", "methods", "inference", "atlas_istn")
DEFAULT_SUITES = tuple(name for name in SUITES if name != "smoke")
#: Packages whose versions go with every result (those installed).
PACKAGES = (
    "jaxseg", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "scikit-image", "medpy",
    "torch", "monai",
)  # fmt: skip


def _block(out: Any) -> Any:
    return jax.block_until_ready(out)


def measure(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 7) -> dict[str, float]:
    """Wall-clock seconds of ``fn()``: ``median_s``, ``min_s``, ``max_s`` over ``repeats`` runs
    after ``warmup`` runs, and ``first_s``, the first warm-up call (JIT compilation included;
    ``compile_s`` = ``first_s - median_s``, at least 0, estimates the compilation alone)."""
    first = None
    for _ in range(warmup):
        start = time.perf_counter()
        _block(fn())
        first = time.perf_counter() - start if first is None else first
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    timing = {"median_s": median, "min_s": min(times), "max_s": max(times), "repeats": repeats}
    if first is not None:
        timing.update(first_s=first, compile_s=max(first - median, 0.0))
    return timing


def peak_memory() -> dict[str, int | None]:
    """Peak memory so far: ``device_bytes``, the accelerator's ``peak_bytes_in_use``
    (``device.memory_stats()``; None on the CPU backend, which keeps no such count), and
    ``host_rss_bytes``, the process's peak resident set (``getrusage``; on the CPU backend it
    holds the arrays). Both are maxima over the whole process so far: run a row in a fresh
    process for the peak of that row alone."""
    import resource

    stats = jax.devices()[0].memory_stats() or {}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"device_bytes": stats.get("peak_bytes_in_use"), "host_rss_bytes": int(rss)}


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
    ``peer`` may be None when the peer package is not installed: the row then has no ratio and
    ``meets_target`` is None (not measured, which neither meets nor misses the target).
    """
    row: dict[str, Any] = {"name": name, "peer": peer_name, **extra}
    row["ours"] = measure(ours, warmup=warmup, repeats=repeats)
    if peer is not None:
        row["peer_timing"] = measure(peer, warmup=warmup, repeats=repeats)
        row["speedup"] = row["peer_timing"]["median_s"] / row["ours"]["median_s"]
    if target is not None:
        row["target_speedup"] = target
        row["meets_target"] = bool(row["speedup"] >= target) if "speedup" in row else None
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


def _versions(packages: Sequence[str]) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def device_info() -> dict[str, Any]:
    """The machine, JAX backend and package versions (:data:`PACKAGES`) the numbers were
    measured on."""
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
        "packages": _versions(PACKAGES),
    }


def _ms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _memory(row: dict[str, Any]) -> str:
    """The row's peak memory: the accelerator's, else the process's resident set."""
    value, where = row.get("device_bytes"), "device"
    if value is None:
        value, where = row.get("host_rss_bytes"), "RSS"
    return "-" if value is None else f"{value / 2**30:.2f} GiB {where}"


def markdown_table(suite: str, rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """A Markdown heading naming the device and a table of ``rows``: median times of jaxseg
    and of the peer, the speed-up (peer / jaxseg) and the target with whether it was met."""
    versions = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    lines = [
        f"# {suite} on {info['platform']}",
        "",
        f"{info['device_kind']} ({info['processor']}, {info['usable_cpus']} usable CPUs), "
        f"{versions}. Medians after warm-up.",
        "",
        "| row | jaxseg | peer | peer time | speed-up | target | compile | peak memory |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        peer = row.get("peer_timing", {}).get("median_s")
        speedup = f"x{row['speedup']:.2f}" if "speedup" in row else "-"
        target = "-"
        if "target_speedup" in row:
            target = f"x{row['target_speedup']:g}, {_verdict(row['meets_target'])}"
        lines.append(
            f"| {row['name']} | {_ms(row['ours']['median_s'])} | {row.get('peer') or '-'} "
            f"| {_ms(peer)} | {speedup} | {target} | {_ms(row['ours'].get('compile_s'))} "
            f"| {_memory(row)} |"
        )
    return "\n".join(lines) + "\n"


def save(
    suite: str, rows: list[dict[str, Any]], *, directory: str | os.PathLike, quick: bool = False
) -> Path:
    """Write ``rows`` with :func:`device_info` to ``<directory>/<suite>-<platform>.json`` (strict
    JSON: non-finite numbers become null) and their :func:`markdown_table` beside it as
    ``.md``; create ``directory`` if needed. Returns the JSON path."""
    info = device_info()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{suite}-{info['platform']}.json"
    payload = {
        "suite": suite,
        "quick": quick,
        "device": info,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": rows,
    }
    write_text(path, json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
    write_text(path.with_suffix(".md"), markdown_table(suite, rows, info))
    if any("voxels" in row for row in rows):
        scaling_figure(rows, info, path.with_suffix(".png"))
    return path


def scaling_figure(rows: list[dict[str, Any]], info: dict[str, Any], path: Path) -> None:
    """A log-log plot of median seconds against volume size (voxels) for every ``function`` of
    the rows that carry ``voxels``: jaxseg solid, the peer dashed in the same colour, with a
    line of slope 1 (cost proportional to the volume) through each function's largest size."""
    from jaxseg.viz import new_figure, save_png

    fig = new_figure((7.0, 4.5))
    ax = fig.add_subplot()
    functions = sorted({row["function"] for row in rows if "voxels" in row})
    for i, function in enumerate(functions):
        own = sorted((r for r in rows if r.get("function") == function), key=lambda r: r["voxels"])
        voxels = np.array([r["voxels"] for r in own], float)
        color = f"C{i}"
        ax.loglog(voxels, [r["ours"]["median_s"] for r in own], "o-", color=color, label=function)
        peers = [(r["voxels"], r["peer_timing"]["median_s"]) for r in own if "peer_timing" in r]
        if peers:
            ax.loglog(*zip(*peers), "s--", color=color, label=f"{own[0]['peer']} (peer)")
        linear = own[-1]["ours"]["median_s"] * voxels / voxels[-1]
        ax.loglog(voxels, linear, ":", color=color, alpha=0.5, linewidth=1)
    ax.set_xlabel("voxels")
    ax.set_ylabel("median seconds")
    ax.set_title(f"cost against volume size on {info['device_kind']} (dotted: slope 1)")
    ax.legend(fontsize=7)
    save_png(fig, path)


def format_row(row: dict[str, Any]) -> str:
    """One human-readable line for a result row."""
    text = f"{row['name']:<48} ours {row['ours']['median_s'] * 1e3:9.1f} ms"
    if "peer_timing" in row:
        text += (
            f" | {row['peer']} {row['peer_timing']['median_s'] * 1e3:9.1f} ms"
            f" | x{row['speedup']:.2f}"
        )
    if "target_speedup" in row:
        text += f" (target x{row['target_speedup']:g}: {_verdict(row['meets_target'])})"
    return text


def _verdict(meets_target: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "not measured, no peer"}[meets_target]


def run_suites(
    names: Sequence[str] | None = None, *, quick: bool = False, out: str | os.PathLike | None = None
) -> int:
    """Run suites by name (:data:`DEFAULT_SUITES` when ``names`` is empty or None) and print
    their rows; with ``out``, also :func:`save` each suite's rows under that directory. Without
    ``out`` nothing is written. ``quick`` takes fewer repeats.

    Returns the exit status: 2 for an unknown suite (nothing is run), 1 when a row misses its
    target, else 0.
    """
    names = list(names or DEFAULT_SUITES)
    unknown = sorted(set(names) - set(SUITES))
    if unknown:
        print(f"unknown suite(s) {unknown}; available: {list(SUITES)}")
        return 2
    print(f"device: {device_info()}")
    missed = False
    for name in names:
        module = importlib.import_module(f"jaxseg.bench.{name}")
        rows = module.run(quick=quick)
        print(f"[{name}]")
        for row in rows:
            print("  " + format_row(row))
            missed |= row.get("meets_target") is False
        if out is not None:
            print(f"  saved {save(name, rows, directory=out, quick=quick)}")
    if out is None:
        print("results not saved (no output directory given)")
    return 1 if missed else 0


def parser(prog: str, *, suites: bool) -> argparse.ArgumentParser:
    """The command line of ``python -m jaxseg.bench`` (``suites``: positional suite names) and
    of ``python -m jaxseg.bench.<suite>``."""
    p = argparse.ArgumentParser(prog=prog)
    if suites:
        p.add_argument(
            "suites",
            nargs="*",
            metavar="SUITE",
            help=f"suites to run, of {list(SUITES)} (default: all but smoke)",
        )
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write <suite>-<platform>.json and .md here (default: print only, write nothing)",
    )
    return p


def main(suite: str, argv: Sequence[str] | None = None) -> None:
    """Command-line entry of one suite: ``python -m jaxseg.bench.<suite> [--quick] [--out DIR]``."""
    args = parser(f"python -m jaxseg.bench.{suite}", suites=False).parse_args(argv)
    raise SystemExit(run_suites([suite], quick=args.quick, out=args.out))
