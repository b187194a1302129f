#!/usr/bin/env bash
# The accelerator benchmarks in one command, from the repository root of a checkout:
#
#   bash benchmarks/device.sh                 # on a machine with a GPU (or TPU)
#   bash benchmarks/device.sh --dry-run OUT   # the same steps on the CPU, smoke sizes, into OUT
#
# 1. Installs what the machine lacks from wheels in .wheels/ when that folder exists (no network
#    needed; jaxseg itself runs from the checkout). Prepare them where there is network, for the
#    device's Python version, e.g.
#      pip download -d .wheels --only-binary=:all: --python-version 3.11 \
#        grain nibabel ml-collections medpy orbax-checkpoint chex optax flax monai
#    and carry .wheels with the working tree. MONAI (the inference suite's peer) is optional:
#    without it those rows run without their peer. PyTorch with CUDA is the image's.
# 2. Refuses to run on the CPU unless --dry-run: the figures are meant to be the device's.
# 3. Runs the suites in order of importance, each with --quick and under the time left of
#    JAXSEG_BENCH_SECONDS (default 420 s, so that installs and start-up fit in 8 minutes): the
#    networks and methods against PyTorch on the same device first, then the pure functions
#    (scaling, svf, sdm, metrics), sliding-window inference, Atlas-ISTN. A suite that runs out of
#    time is stopped and named at the end; the results of the suites before it are kept.
# 4. Writes benchmarks/results/<suite>-<platform>.json, .md and .png (the scaling plot).
#
# --dry-run runs the smoke suite on the CPU through the same steps; the tests run it.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
out=benchmarks/results
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  out="${2:?usage: bash benchmarks/device.sh --dry-run OUT}"
fi
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # the inference rows measure fresh processes

# 1. Dependencies: the distributions whose modules one interpreter cannot find.
mapfile -t missing < <(python - <<'EOF'
import importlib.util

NEED = {"grain": "grain", "nibabel": "nibabel", "ml_collections": "ml-collections",
        "medpy": "medpy", "orbax.checkpoint": "orbax-checkpoint", "chex": "chex",
        "optax": "optax", "flax": "flax", "h5py": "h5py", "matplotlib": "matplotlib",
        "skimage": "scikit-image", "tqdm": "tqdm"}
for module, distribution in NEED.items():
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package (orbax)
        found = False
    if not found:
        print(distribution)
EOF
)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ -d .wheels ]; then
    echo "installing from .wheels: ${missing[*]}"
    python -m pip install -q --no-index --find-links .wheels "${missing[@]}"
  else
    echo "missing: ${missing[*]} (no .wheels folder to install them from)" >&2
    exit 2
  fi
fi
if ! python -c "import monai" 2>/dev/null && [ -d .wheels ]; then
  python -m pip install -q --no-index --find-links .wheels monai 2>/dev/null \
    || echo "MONAI not installed: the inference rows run without their peer" >&2
fi

# 2. The device.
platform=$(python -c "import jax; print(jax.default_backend())")
echo "device.sh: JAX backend ${platform}; results to ${out}"
if [ "${dry_run}" = 0 ] && [ "${platform}" = cpu ]; then
  echo "no accelerator found (JAX runs on the CPU); use --dry-run OUT to check the script" >&2
  exit 2
fi
python -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')" \
  2>/dev/null || echo "PyTorch is not installed: the rows have no PyTorch peer"

# 3. The suites, under the time budget.
if [ "${dry_run}" = 1 ]; then
  suites=(smoke)
else
  suites=(nets methods scaling svf sdm metrics inference atlas_istn)
fi
deadline=$((SECONDS + ${JAXSEG_BENCH_SECONDS:-420}))
stopped=()
for suite in "${suites[@]}"; do
  left=$((deadline - SECONDS))
  if [ "${left}" -lt 20 ]; then
    stopped+=("${suite} (not started)")
    continue
  fi
  echo "== ${suite} (${left} s left)"
  status=0
  timeout "${left}" python -m jaxseg.bench --quick --out "${out}" "${suite}" || status=$?
  case "${status}" in
    0) ;;
    1) echo "${suite}: a row missed its target (see its table)" ;;
    124) stopped+=("${suite} (out of time)") ;;
    *) stopped+=("${suite} (failed, status ${status})") ;;
  esac
done

# 4. What was written.
ls -l "${out}"
if [ "${#stopped[@]}" -gt 0 ]; then
  printf 'not complete: %s\n' "${stopped[@]}"
  exit 1
fi
