#!/usr/bin/env bash
# Health check of the server started by start-server.sh, with the same environment: GET /health.
# Used by docker/compose.yaml and the CI topology test; exit 0 when the server answers 200.
set -euo pipefail
host=${MLFLOW_HOST:-127.0.0.1}
[ "$host" = 0.0.0.0 ] && host=127.0.0.1
exec "${MLFLOW_PYTHON:-python3}" -c '
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
    sys.exit(0 if response.status == 200 else 1)
' "http://$host:${MLFLOW_PORT:-5000}/health"
