#!/usr/bin/env bash
# Installs tsfm-cluster with its test extras and runs the whole suite.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet -e ".[test]" || exit 1
export RAY_AUTH_MODE=disabled
python3 -m pytest -q "$@"
status=$?
# pytest exits 5 when it collected no tests: that is a broken checkout, not a pass.
if [ "$status" -eq 5 ]; then echo "no tests were collected" >&2; fi
exit "$status"
