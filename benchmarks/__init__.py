"""jaxseg's benchmark suite: one module a suite, each with ``run(quick=False) -> list[dict]``.

Run from a checkout with ``jaxseg bench [--suite NAME]`` or ``python -m benchmarks [NAME ...]``.
"""
