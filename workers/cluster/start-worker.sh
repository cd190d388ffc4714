#!/usr/bin/env bash
# Start a worker node that joins the automl Ray cluster at RAY_HEAD_ADDRESS (HOST:PORT of start-head.sh).
# CPU or GPU: Ray detects the node's GPUs; RAY_NUM_GPUS declares them explicitly (what the scheduler packs
# trials' gpus_per_trial onto), RAY_RESOURCES adds custom ones, e.g. '{"gpu_a100": 1}'.
# In the foreground by default (RAY_BLOCK=1).
#
#   RAY_HEAD_ADDRESS=10.0.0.5:6379 RAY_AUTH_TOKEN=... RAY_NUM_GPUS=4 bash workers/cluster/start-worker.sh
#
# Variables: RAY_HEAD_ADDRESS (required), RAY_NUM_CPUS, RAY_NUM_GPUS, RAY_RESOURCES, RAY_NODE_IP,
# RAY_OBJECT_STORE_MEMORY, RAY_TEMP_DIR, RAY_BLOCK, RAY_START_ARGS, RAY_AUTH_MODE/RAY_AUTH_TOKEN/
# RAY_AUTH_TOKEN_PATH, AUTOML_HOME. See workers/cluster/README.md.
set -euo pipefail
# shellcheck source=workers/cluster/ray-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/ray-common.sh"

head_address=${RAY_HEAD_ADDRESS:-}
[ -n "$head_address" ] || die "set RAY_HEAD_ADDRESS to the head node's HOST:PORT (what start-head.sh printed, e.g. 10.0.0.5:6379)."

if [ -n "${RAY_NUM_GPUS:-}" ] && [ "$RAY_NUM_GPUS" -gt 0 ] && command -v nvidia-smi >/dev/null 2>&1; then
  seen=$(nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU' || true)
  if [ "$seen" -lt "$RAY_NUM_GPUS" ]; then
    echo "workers/cluster: RAY_NUM_GPUS=$RAY_NUM_GPUS but nvidia-smi lists $seen GPU(s) here; trials may wait or share." >&2
  fi
fi

echo "workers/cluster: Ray worker node joining $head_address (GPUs: ${RAY_NUM_GPUS:-detected}, auth: $RAY_AUTH_MODE)" >&2
exec "$ray_cmd" start "--address=$head_address" "${ray_args[@]}"
