#!/usr/bin/env bash
# Serving figures on a GPU machine (issue 10): benchmarks/serve_load.py with TSFM_USE_GPU=1 (the
# ModelServer holds the GPU; the bare process runs the same app on it), W1/W2 on both routes at
# c1/16/64/256, a mixed run with 10^4-series bulk requests, and the in-process batched ceiling on
# the same GPU. The device machine has PyTorch but not Ray or our other dependencies and cannot
# reach a package index: they travel as wheels (Ray, too big for one transfer, as a tarball staged
# by an earlier call under $STAGE).
#   bash benchmarks/gpu_serving.sh            # writes $OUT/serve_load_gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${STAGE:-/root/stage}
OUT=${OUT:-benchmarks/results}
PY=$(command -v python3)
SITE=$("$PY" -c "import site; print(site.getsitepackages()[0])")
if ! "$PY" -c "import ray" 2>/dev/null; then
    tar -xJf "$STAGE/ray_slim.tar.xz" -C "$SITE"
    "$PY" -m pip install -q --no-index --no-deps .device/wheels/*.whl
    printf '#!%s\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n' "$PY" > "$(dirname "$PY")/ray"
    chmod +x "$(dirname "$PY")/ray"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
export TSFM_USE_GPU=1 PYTHONPATH="$PWD" RAY_DEDUP_LOGS=0
"$PY" benchmarks/serve_load.py --targets bare,serve --workloads W1,W2 --levels 1,16,64,256 --requests 3000 \
    --max-seconds "${SECONDS_PER_LEVEL:-5}" --num-cpus "${NUM_CPUS:-8}" --bulk-series 10000 --inprocess --device cuda \
    --output "$OUT/serve_load_gpu.json"
