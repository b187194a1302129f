#!/usr/bin/env bash
# Supervised V-Net vs SASSNet vs DTML on the real LA data in one setting of jaxseg/configs/la.py:
# one run per method and seed, each evaluated as trained and with the largest connected
# component (eval_lcc), then the tables (Dice, Jaccard, 95HD and ASD in mm and voxels, training
# minutes, differences to the supervised V-Net seed by seed) and the figures FIGURE.png and
# FIGURE_lcc.png. Called by la_cpu.sh and la_paper.sh.
# Usage: bash experiments/la_compare.sh LA_ROOT SETTING RUNS_DIR SEEDS FIGURE
set -euo pipefail
root="$1" setting="$2" runs="$3" seeds="$4" figure="$5"
for method in supervised sassnet dtml; do
  jaxseg train "${method}:${setting}" --workdir "${runs}/${method}" --seeds "${seeds}" \
    --no-progress --set data.root="${root}"
done
for run in "${runs}"/*/seed_*; do
  [ -f "${run}/eval_lcc/metrics.json" ] || jaxseg evaluate --workdir "${run}" \
    --output "${run}/eval_lcc" --no-progress --set eval.largest_component=True
done
python experiments/summarize.py "${runs}" --paired supervised --voxels --minutes \
  --output "${figure}.png"
python experiments/summarize.py "${runs}" --eval eval_lcc --paired supervised --voxels \
  --output "${figure}_lcc.png"
