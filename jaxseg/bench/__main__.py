"""``python -m jaxseg.bench [--quick] [--out DIR] [SUITE ...]``: run suites (all but ``smoke``
by default); results are written only under ``--out DIR``."""

from jaxseg.bench.harness import parser, run_suites

args = parser("python -m jaxseg.bench", suites=True).parse_args()
raise SystemExit(run_suites(args.suites, quick=args.quick, out=args.out))
