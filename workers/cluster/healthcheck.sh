#!/usr/bin/env bash
# Health check of a node started by start-head.sh (`healthcheck.sh head`) or by start-worker.sh /
# start-runner.sh (`healthcheck.sh node`), or of start-server.sh (`healthcheck.sh server`), with the same
# environment; exit 0 when healthy.
# head: the GCS on RAY_PORT answers (with the cluster's auth token). node: a raylet runs here (in a
# container: in this container) and the head's GCS answers. server: GET /api/v1/health on
# AUTOML_SERVER_PORT answers 200 (the server reaches its job store). Used by docker/compose.yaml and the
# CI topology test.
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
  server)
    host=${AUTOML_SERVER_HOST:-127.0.0.1}
    [ "$host" = 0.0.0.0 ] && host=127.0.0.1
    exec "${AUTOML_PYTHON:-python3}" -c '
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
    sys.exit(0 if response.status == 200 else 1)
' "http://$host:${AUTOML_SERVER_PORT:-8080}/api/v1/health" ;;
  *)
    echo "usage: healthcheck.sh head|node|server" >&2; exit 2 ;;
esac
