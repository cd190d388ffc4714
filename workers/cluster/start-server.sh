#!/usr/bin/env bash
# Start `automl server` (the HTTP API and web view in front of the job store; docs/server.md) in the
# foreground (exec: SIGTERM reaches it). It takes the service's settings from the same variables as the
# runners (start-runner.sh) and holds the same credentials: the job store, the Optuna storage, MLflow.
# Users hold only a token (automl admin token create NAME). It needs no Ray and no shared AUTOML_HOME:
# everything it knows is in the job store, so several can run behind a load balancer.
#
#   AUTOML_DB_URL=postgresql://automl:PASSWORD@db.internal:5432/automl \
#   AUTOML_STORAGE_URL=postgresql://automl:PASSWORD@db.internal:5432/automl \
#   MLFLOW_TRACKING_URI=http://mlflow.internal:5000 AUTOML_SERVER_HOST=0.0.0.0 \
#   bash workers/cluster/start-server.sh
#
# Variables: AUTOML_DB_URL (required), AUTOML_STORAGE_URL, MLFLOW_TRACKING_URI (as the runners have them);
# AUTOML_SERVER_HOST (default 127.0.0.1; 0.0.0.0 in a container), AUTOML_SERVER_PORT (8080),
# AUTOML_SERVER_WORKERS (1) and the other AUTOML_SERVER_* settings (docs/server.md); AUTOML_WEBHOOKS and
# AUTOML_WEBHOOK_SECRET (the server delivers job-end webhooks too); AUTOML_COMMAND: the `automl` command
# (default: automl on PATH). Healthy when `healthcheck.sh server` passes (GET /api/v1/health).
set -euo pipefail

if [ -z "${AUTOML_DB_URL:-}" ]; then
  echo "workers/cluster/start-server.sh: set AUTOML_DB_URL to the job store the runners use," \
       "e.g. postgresql://automl:PASSWORD@db.internal:5432/automl (sqlite:////path/jobs.db for a trial on one machine)." >&2
  exit 2
fi
[ -n "${AUTOML_STORAGE_URL:-}" ] || echo "workers/cluster/start-server.sh: AUTOML_STORAGE_URL is not set;" \
  "status and best read studies from \$AUTOML_HOME/studies.db, not where the runners write them." >&2

# automl server prints where it listens and its job store, the password hidden.
exec "${AUTOML_COMMAND:-automl}" server "$@"
