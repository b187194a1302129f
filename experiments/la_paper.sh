#!/usr/bin/env bash
# The LA papers' protocol (SASSNet, DTML): supervised V-Net, SASSNet and DTML with the `paper`
# settings of jaxseg/configs (6000 iterations of batch 2 labelled + 2 unlabelled patches of
# 112x112x80, 16-filter V-Net, SGD 0.01 x0.1 every 2500 iterations, the last checkpoint, sliding
# window 18x18x4 on the 20 test cases) at 16 labelled cases (`paper`) and 8 (`paper8`), every
# run evaluated as trained and with the largest connected component, then the tables.
# Meant for an accelerator: nine or more runs of 6000 iterations (see benchmarks/README.md for
# the measured time per iteration of each method on a device and on CPU).
# Usage: bash experiments/la_paper.sh LA_ROOT [RUNS_DIR] [SEEDS]   (defaults runs/la_paper, 0)
set -euo pipefail
root="${1:?usage: bash experiments/la_paper.sh LA_ROOT [RUNS_DIR] [SEEDS]}"
runs="${2:-runs/la_paper}"
seeds="${3:-0}"
for setting in paper paper8; do
  bash experiments/la_compare.sh "${root}" "${setting}" "${runs}/${setting}" "${seeds}" \
    "${runs}/${setting}/dice"
done
