"""The ``jaxseg`` command.

Subcommands (``jaxseg COMMAND --help`` for each): ``demo``, ``train``, ``evaluate``, ``predict``,
``bench`` and ``data check``. Heavy imports happen inside the handlers so that ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxseg import __version__

# Commands of the public interface whose implementation is not part of this release yet. They
# are listed so that the interface is visible, and exit with status 2 and a plain message.
_PLANNED = {
    "train": "train a method from a config: jaxseg train CONFIG[:setting] --workdir DIR",
    "evaluate": "evaluate a run directory: jaxseg evaluate --workdir DIR",
    "predict": "predict a volume: jaxseg predict --workdir DIR --input FILE --output FILE",
}


def _demo(args: argparse.Namespace) -> int:
    from jaxseg.demo import run_demo

    run_demo(Path(args.workdir), size=args.size, seed=args.seed)
    return 0


def _bench(args: argparse.Namespace) -> int:
    # The suites live in the repository's benchmarks/ package, beside jaxseg/.
    for root in (Path.cwd(), *Path.cwd().parents):
        if (root / "benchmarks" / "harness.py").is_file():
            break
    else:
        print(
            "jaxseg bench: no benchmarks/ folder here or above; run it from a checkout of the "
            "jaxseg repository.",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(root))
    from benchmarks.harness import run_suites

    return run_suites(args.suite, quick=args.quick)


def _data_check(args: argparse.Namespace) -> int:
    from jaxseg.data.check import main as check_main

    return check_main(args.directory, args.json_path, num_classes=args.num_classes)


def _planned(name: str):
    def handler(args: argparse.Namespace) -> int:
        print(f"jaxseg {name}: not available in jaxseg {__version__} yet.", file=sys.stderr)
        return 2

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxseg",
        description="Semi-supervised and shape-aware 3D medical image segmentation in JAX.",
    )
    parser.add_argument("--version", action="version", version=f"jaxseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run the built-in demonstration on synthetic data and write figures",
        description="Integrate a random stationary velocity field, warp a synthetic volume "
        "and its label with it, measure inverse consistency, Jacobian, signed distance maps "
        "and surface metrics, and write figures and metrics to WORKDIR.",
    )
    demo.add_argument(
        "--workdir", default="runs/demo", help="output directory (default: %(default)s)"
    )
    demo.add_argument(
        "--size", type=int, default=96, help="volume edge in voxels (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.set_defaults(handler=_demo)

    for name, summary in _PLANNED.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if name == "train":
            sub.add_argument("config", help="experiment config file, optionally CONFIG:setting")
            sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        sub.add_argument("--workdir", required=True, help="run directory")
        if name == "predict":
            sub.add_argument("--input", required=True, help="image file to segment")
            sub.add_argument("--output", required=True, help="label file to write")
        sub.set_defaults(handler=_planned(name))

    bench = commands.add_parser(
        "bench",
        help="run the benchmark suite (from a checkout of the repository)",
        description="Time jaxseg against installed peers (scipy, medpy, MONAI, PyTorch); "
        "medians after warm-up, written to benchmarks/results/<suite>-<platform>.json.",
    )
    bench.add_argument(
        "--suite", action="append", help="suite to run (repeatable; default: all suites)"
    )
    bench.add_argument("--quick", action="store_true", help="fewer repeats")
    bench.set_defaults(handler=_bench)

    data = commands.add_parser("data", help="inspect data sets", description="Inspect data sets.")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = data_commands.add_parser(
        "check", help="validate every case of a data set directory (exit 1 on any problem)"
    )
    check.add_argument("directory", help="a Decathlon NIfTI, LA h5 or letter-B PNG data set")
    check.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    check.add_argument(
        "--num-classes", type=int, help="expected number of classes (default: from the data set)"
    )
    check.set_defaults(handler=_data_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
