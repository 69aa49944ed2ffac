#!/usr/bin/env bash
# The GPU smoke check on a bare GPU machine (PyTorch installed, no network, no project venv), with what
# scripts/gpu_bundle.py packed into .gpu-bundle/ beforehand (carry that folder along). Installs the wheels into
# $SITE, puts them and the trimmed assets on PYTHONPATH, and runs scripts/smoke_gpu.py without the lm-eval tasks
# and the report, whose packages are not in the bundle. Arguments go to smoke_gpu.py, e.g.:
#   bash scripts/smoke_gpu_device.sh --json "$OUT/smoke.json"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUNDLE=${BUNDLE:-.gpu-bundle}
SITE=${SITE:-/tmp/prunescope-site}
export PYTHONUNBUFFERED=1
[ -d "$BUNDLE" ] && BUNDLE=$(cd "$BUNDLE" && pwd)
if [ -d "$BUNDLE/wheels" ]; then
  start=$(date +%s)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$BUNDLE"/wheels/*.whl
  export PYTHONPATH="$SITE:$BUNDLE/assets${PYTHONPATH:+:$PYTHONPATH}"
  echo "== bundle installed into $SITE in $(( $(date +%s) - start )) s"
elif [ -d "$BUNDLE/assets" ]; then
  export PYTHONPATH="$BUNDLE/assets${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" scripts/smoke_gpu.py --timeout 420 --config 'tasks={benchmarks: []}' "$@" \
  -- --until metrics_layerwise metrics_generation metrics_subspace --scheduler greedy
