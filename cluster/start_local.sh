#!/usr/bin/env bash
# Start a local multi-node Ray cluster on this machine (one head + N worker nodes, each its own
# raylet), deploy tsfm-cluster on it, and print how to submit jobs.
#   cluster/start_local.sh [WORKERS=2] [CPUS_PER_NODE=2]
#   ray stop   # tears everything down
set -euo pipefail
workers=${1:-2}
cpus=${2:-2}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
ray start --head --port=6379 --num-cpus=0 --dashboard-host=127.0.0.1 --dashboard-port=8265
for i in $(seq 1 "$workers"); do
  ray start --address=127.0.0.1:6379 --num-cpus="$cpus" --resources="{\"worker_node_$i\": 1}"
done
serve deploy --address http://127.0.0.1:8265 "$(dirname "$0")/serve_config_local.yaml"
echo "serving on http://127.0.0.1:8000 ; submit jobs with:"
echo "  ray job submit --address http://127.0.0.1:8265 -- python -m train_jobs.finetune --help"
