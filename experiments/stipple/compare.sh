#!/usr/bin/env bash
# STIPPLE's ablation (the paper's Table 2) and prior positioning (Table 4) on the built-in
# abdominal CT-like phantoms (stipple:synthetic: 20 training phantoms, 4 validation, 10 test):
# for each number of labelled phantoms (2 = 10 %, 6 = 30 %), three seeds of
#   baseline  the U-Net alone (no prior, no pseudo-labels; batches of 6 labelled slices)
#   prior     the prior in the activation, no pseudo-labels
#   relabel   pseudo-labels chosen without prior (3 labelled + 3 pseudo-labelled slices)
#   stipple   both (the full method)
# then every run with a prior evaluated again with the naive positioning (the centroid alone)
# and with the label's own centre (an oracle: the effect of positioning errors), the tables
# (Markdown, printed) and the figures under experiments/stipple/figures/.
# Usage: bash experiments/stipple/compare.sh [RUNS_DIR [LABELLED...]]  (default runs/stipple 2 6)
set -euo pipefail
runs="${1:-runs/stipple}"
shift || true
labelled="${*:-2 6}"
figures=experiments/stipple/figures
mkdir -p "${figures}"
no_relabel=(--set relabel.iterations=0 --set data.labelled_batch=6 --set data.unlabelled_batch=0)
for n in ${labelled}; do
  out="${runs}/labelled_${n}"
  common=(--seeds 0,1,2 --no-progress --set "data.labelled=${n}")
  jaxseg train stipple:synthetic --workdir "${out}/baseline" "${common[@]}" \
    --set prior.use=False "${no_relabel[@]}"
  jaxseg train stipple:synthetic --workdir "${out}/prior" "${common[@]}" "${no_relabel[@]}"
  jaxseg train stipple:synthetic --workdir "${out}/relabel" "${common[@]}" --set prior.use=False
  jaxseg train stipple:synthetic --workdir "${out}/stipple" "${common[@]}"
  for run in "${out}"/prior/seed_* "${out}"/stipple/seed_*; do
    for positioning in naive label; do
      [ -f "${run}/eval_${positioning}/metrics.json" ] || jaxseg evaluate --workdir "${run}" \
        --output "${run}/eval_${positioning}" --no-progress \
        --set "prior.positioning=${positioning}"
    done
  done
  echo "## ${n} labelled phantoms: KL positioning (the method's)"
  python experiments/summarize.py "${out}" --paired baseline --minutes \
    --output "${figures}/labelled_${n}.png"
  for positioning in naive label; do
    echo "## ${n} labelled phantoms: ${positioning} positioning"
    python experiments/summarize.py "${out}" --eval "eval_${positioning}" \
      --output "${figures}/labelled_${n}_${positioning}.png"
  done
done
first="$(echo "${labelled}" | cut -d' ' -f1)"
python experiments/stipple/figures.py "${runs}/labelled_${first}/stipple/seed_0" "${figures}"
