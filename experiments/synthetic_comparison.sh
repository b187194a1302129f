#!/usr/bin/env bash
# Supervised V-Net vs SASSNet vs DTML on the built-in LA-like phantoms ("synthetic" setting:
# 4 labelled + 12 unlabelled training cases, 4 validation and 8 test cases, 500 iterations),
# three seeds each, an ablation, then the summary table and figure of experiments/README.md.
# Usage: bash experiments/synthetic_comparison.sh [RUNS_DIR]   (default runs/synthetic)
set -euo pipefail
runs="${1:-runs/synthetic}"
for method in supervised sassnet dtml; do
  jaxseg train "experiments/${method}/configs/la.py:synthetic" \
    --workdir "${runs}/${method}" --seeds 0,1,2 --no-progress
done
# Ablation: SASSNet without the unlabelled phantoms (no adversarial term).
jaxseg train experiments/sassnet/configs/la.py:synthetic --workdir "${runs}/sassnet_no_unlabelled" \
  --seeds 0,1,2 --no-progress --set data.unlabelled=0
python experiments/summarize.py "${runs}" --output experiments/figures/synthetic_comparison.png
