"""``python -m benchmarks [--quick] [SUITE ...]``: run suites (all by default)."""

import argparse

from benchmarks.harness import run_suites, suite_names

parser = argparse.ArgumentParser(prog="python -m benchmarks")
parser.add_argument("suites", nargs="*", help=f"suites to run (default: all of {suite_names()})")
parser.add_argument("--quick", action="store_true", help="fewer repeats")
args = parser.parse_args()
raise SystemExit(run_suites(args.suites or None, quick=args.quick))
