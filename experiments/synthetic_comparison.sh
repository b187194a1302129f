#!/usr/bin/env bash
# Supervised V-Net vs SASSNet vs DTML on the built-in LA-like phantoms ("synthetic" setting:
# 4 labelled + 12 unlabelled training cases, 4 validation and 8 test cases, 500 iterations),
# three seeds each, and each semi-supervised method without its unlabelled cases; every run is
# evaluated as trained and again with largest-component post-processing (seed_<s>/eval_lcc);
# then the tables and figure of experiments/README.md.
# Usage: bash experiments/synthetic_comparison.sh [RUNS_DIR]   (default runs/synthetic)
set -euo pipefail
runs="${1:-runs/synthetic}"
for method in supervised sassnet dtml; do
  jaxseg train "experiments/${method}/configs/la.py:synthetic" \
    --workdir "${runs}/${method}" --seeds 0,1,2 --no-progress
done
# Ablations: the same configs without the unlabelled phantoms (batches of the 2 labelled items:
# no adversarial term for SASSNet; DTML's consistency on the labelled items only).
for method in sassnet dtml; do
  jaxseg train "experiments/${method}/configs/la.py:synthetic" \
    --workdir "${runs}/${method}_no_unlabelled" --seeds 0,1,2 --no-progress \
    --set data.unlabelled=0
done
for run in "${runs}"/*/seed_*; do
  jaxseg evaluate --workdir "${run}" --output "${run}/eval_lcc" --no-progress \
    --set eval.largest_component=True
done
python experiments/summarize.py "${runs}" --paired supervised \
  --output experiments/figures/synthetic_comparison.png
python experiments/summarize.py "${runs}" --eval eval_lcc --paired supervised \
  --output experiments/figures/synthetic_comparison_lcc.png
