"""jaxseg's benchmark suites, shipped with the package: one module a suite (the names in
:data:`jaxseg.bench.harness.SUITES`), each with ``run(quick=False) -> list[dict]``.

``python -m jaxseg.bench [--quick] [--out DIR] [SUITE ...]`` or :func:`run_suites` from Python
runs them from any directory; results are written only under ``out`` (see
:mod:`jaxseg.bench.harness`).
"""

from jaxseg.bench.harness import DEFAULT_SUITES, SUITES, run_suites

__all__ = ["DEFAULT_SUITES", "SUITES", "run_suites"]
