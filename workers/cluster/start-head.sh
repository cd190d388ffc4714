#!/usr/bin/env bash
# Start the head node of the automl Ray cluster (GCS + scheduler); runners connect with RAY_ADDRESS=HEAD:PORT.
# In the foreground by default (RAY_BLOCK=1), so it can be a container's or a systemd unit's main process.
#
#   RAY_AUTH_TOKEN=... RAY_NUM_CPUS=4 bash workers/cluster/start-head.sh
#
# Variables (all optional but the token): RAY_PORT (6379), RAY_NUM_CPUS, RAY_NUM_GPUS (0 on the head:
# GPU trials belong on GPU workers), RAY_RESOURCES, RAY_NODE_IP, RAY_OBJECT_STORE_MEMORY, RAY_TEMP_DIR,
# RAY_DASHBOARD (1: serve the dashboard on RAY_DASHBOARD_PORT, 8265; needs ray[default]), RAY_BLOCK,
# RAY_START_ARGS, RAY_AUTH_MODE/RAY_AUTH_TOKEN/RAY_AUTH_TOKEN_PATH, AUTOML_HOME. See workers/cluster/README.md.
set -euo pipefail
# shellcheck source=workers/cluster/ray-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/ray-common.sh"

port=${RAY_PORT:-6379}
[ -z "${RAY_NUM_GPUS:-}" ] && ray_args+=(--num-gpus=0)
if [ "${RAY_DASHBOARD:-0}" = 1 ]; then
  ray_args+=(--include-dashboard=true --dashboard-host=0.0.0.0 "--dashboard-port=${RAY_DASHBOARD_PORT:-8265}")
else
  ray_args+=(--include-dashboard=false)
fi

echo "workers/cluster: Ray head on port $port (auth: $RAY_AUTH_MODE)" >&2
exec "$ray_cmd" start --head "--port=$port" "${ray_args[@]}"
