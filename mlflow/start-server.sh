#!/usr/bin/env bash
# Start the MLflow tracking server for the automl service, in the foreground (exec: signals reach it).
# Runs, params, metrics and the Model Registry go to a database (PostgreSQL in production); artifacts
# (models, plots, trial tables) go through the server (--serve-artifacts) to a directory or an
# S3-compatible bucket, so clients need only the server's URL, never the store's credentials.
#
# Environment (MLflow's own variable names where it has them):
#   MLFLOW_BACKEND_STORE_URI      required; e.g. postgresql://mlflow:PASSWORD@db.internal:5432/mlflow
#                                 (use a database of its own: MLflow and Optuna both keep an alembic_version table)
#   MLFLOW_ARTIFACTS_DESTINATION  a directory (created if missing) or s3://bucket/prefix
#                                 (default: /var/lib/mlflow/artifacts; for S3 set AWS_ACCESS_KEY_ID,
#                                 AWS_SECRET_ACCESS_KEY and, for MinIO & co., MLFLOW_S3_ENDPOINT_URL; needs
#                                 boto3, which the image has: docker/image-requirements.txt)
#   MLFLOW_HOST                   interface to listen on (default 127.0.0.1; 0.0.0.0 in a container)
#   MLFLOW_PORT                   port (default 5000)
#   MLFLOW_WORKERS                server worker processes (default 2)
#   MLFLOW_SERVER_ALLOWED_HOSTS   Host headers to accept besides localhost and private IPs, e.g.
#                                 mlflow.internal,mlflow:5000 (read by MLflow itself)
#   MLFLOW_SERVER_EXTRA_ARGS      more `mlflow server` options, split on spaces
#   MLFLOW_PYTHON                 the Python that has mlflow installed (default: python3 on PATH)
#
# Example:
#   MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:PASSWORD@db.internal:5432/mlflow \
#   MLFLOW_ARTIFACTS_DESTINATION=/srv/mlflow/artifacts MLFLOW_HOST=0.0.0.0 bash mlflow/start-server.sh
# then point the service at it: export MLFLOW_TRACKING_URI=http://THIS_HOST:5000
set -euo pipefail

backend=${MLFLOW_BACKEND_STORE_URI:-}
if [ -z "$backend" ]; then
  echo "mlflow/start-server.sh: set MLFLOW_BACKEND_STORE_URI to the tracking database," \
       "e.g. postgresql://mlflow:PASSWORD@db.internal:5432/mlflow (sqlite:////path/mlflow.db for a trial run)." >&2
  exit 2
fi
artifacts=${MLFLOW_ARTIFACTS_DESTINATION:-/var/lib/mlflow/artifacts}
host=${MLFLOW_HOST:-127.0.0.1}
port=${MLFLOW_PORT:-5000}
workers=${MLFLOW_WORKERS:-2}
python=${MLFLOW_PYTHON:-python3}

case "$artifacts" in
  s3://*)
    # MLflow talks to S3 through boto3; without it the server would start and fail at the first upload.
    if ! "$python" -c "import boto3" 2>/dev/null; then
      echo "mlflow/start-server.sh: MLFLOW_ARTIFACTS_DESTINATION is an s3:// bucket, and $python has no boto3;" \
           "install it (pip install boto3; the automl-service image has it)." >&2
      exit 2
    fi
    ;;
  *://*) ;;  # gs://, ... : the server talks to the store with its own credentials
  *)
    if ! mkdir -p "$artifacts" 2>/dev/null || [ ! -w "$artifacts" ]; then
      echo "mlflow/start-server.sh: the artifact directory $artifacts is not writable by $(id -un);" \
           "set MLFLOW_ARTIFACTS_DESTINATION to a writable directory or an s3:// URI." >&2
      exit 2
    fi
    artifacts=$(cd "$artifacts" && pwd)
    ;;
esac

# Never echo the backend URI: it carries the database password.
echo "mlflow/start-server.sh: MLflow tracking server on http://$host:$port, artifacts in $artifacts" >&2
# shellcheck disable=SC2086  # MLFLOW_SERVER_EXTRA_ARGS is a list of options on purpose
exec "$python" -m mlflow server \
  --backend-store-uri "$backend" \
  --serve-artifacts \
  --artifacts-destination "$artifacts" \
  --host "$host" \
  --port "$port" \
  --workers "$workers" \
  ${MLFLOW_SERVER_EXTRA_ARGS:-}
