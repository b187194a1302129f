#!/usr/bin/env bash
# Supervised V-Net vs SASSNet vs DTML on the real Left Atrium data (2018 challenge, UA-MT
# preprocessing) in the `cpu` setting of jaxseg/configs/la.py: 8 labelled cases, 8 validation
# cases (the last of the 80 training cases), 64 unlabelled; 1.5 mm, 8-filter V-Net; the best
# validation checkpoint, scored on the 20 test cases at their own 0.625 mm grid. Three seeds
# each, every run evaluated as trained and with the largest connected component (eval_lcc),
# then the tables and figures of experiments/README.md.
# Usage: bash experiments/la_cpu.sh LA_ROOT [RUNS_DIR] [SEEDS]
#   LA_ROOT: the folder of <id>/mri_norm2.h5 (data/2018LA_Seg_Training Set of the UA-MT
#   repository); RUNS_DIR defaults to runs/la_cpu, SEEDS to 0,1,2.
set -euo pipefail
root="${1:?usage: bash experiments/la_cpu.sh LA_ROOT [RUNS_DIR] [SEEDS]}"
runs="${2:-runs/la_cpu}"
seeds="${3:-0,1,2}"
bash experiments/la_compare.sh "${root}" cpu "${runs}" "${seeds}" experiments/figures/la_cpu
