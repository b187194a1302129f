"""The rows of the other suites at tiny sizes: seconds on 2 CPU cores, for tests and a check that
the harness works on a machine (timing, peers, JSON, Markdown and plot output).

Rows (no targets: at these sizes fixed costs dominate and the ratios mean little):

* every function of :mod:`jaxseg.bench.scaling` on a 16^3 volume (copy, ``warp``,
  ``integrate_svf``, SDM, hd95 + asd), against its peer where installed;
* ``supervised iteration 2x16x16x16 (smoke)``: one training iteration of the supervised V-Net in
  its ``smoke`` config (4 filters) at a 16^3 patch, as :mod:`jaxseg.bench.methods` times them.

``quick`` takes one repeat fewer.
"""

from __future__ import annotations

from jaxseg.bench import harness, methods, scaling

SIZE = 16


def run(quick: bool = False) -> list[dict]:
    timing = {"warmup": 1, "repeats": 2 if quick else 3}
    return [
        *scaling.rows_at(SIZE, timing),
        methods.train_step_row("supervised", "smoke", (SIZE,) * 3, **timing),
    ]


if __name__ == "__main__":
    harness.main("smoke")
