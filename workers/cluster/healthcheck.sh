#!/usr/bin/env bash
# Health check of a node started by start-head.sh (`healthcheck.sh head`) or by start-worker.sh /
# start-runner.sh (`healthcheck.sh node`), with the same environment; exit 0 when healthy.
# head: the GCS on RAY_PORT answers (with the cluster's auth token). node: a raylet runs here (in a
# container: in this container) and the head's GCS answers. Used by docker/compose.yaml and the CI topology test.
set -euo pipefail
ray_cmd=${RAY_COMMAND:-ray}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

case "${1:-}" in
  head)
    exec "$ray_cmd" health-check --address "127.0.0.1:${RAY_PORT:-6379}" ;;
  node)
    [ -n "${RAY_HEAD_ADDRESS:-}" ] || { echo "healthcheck.sh: set RAY_HEAD_ADDRESS" >&2; exit 2; }
    grep -qx raylet /proc/[0-9]*/comm 2>/dev/null || { echo "healthcheck.sh: no raylet running here" >&2; exit 1; }
    exec "$ray_cmd" health-check --address "$RAY_HEAD_ADDRESS" ;;
  *)
    echo "usage: healthcheck.sh head|node" >&2; exit 2 ;;
esac
