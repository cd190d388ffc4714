#!/usr/bin/env bash
# Start a runner (`automl worker`) that drives the automl Ray cluster at RAY_HEAD_ADDRESS.
# A Ray driver must run on a node of its cluster, so this first joins the cluster as a node that offers
# no CPUs and no GPUs (no trial is ever placed here; the node exists for the driver), then execs
# `automl worker` with any arguments given (e.g. --concurrency 2): SIGTERM reaches the runner directly and
# hands its jobs back to the queue. The node's Ray processes stay until the container ends (or `ray stop`).
#
#   RAY_HEAD_ADDRESS=10.0.0.5:6379 RAY_AUTH_TOKEN=... AUTOML_DB_URL=postgresql://... \
#   MLFLOW_TRACKING_URI=http://mlflow.internal:5000 AUTOML_HOME=/shared/automl \
#   bash workers/cluster/start-runner.sh --concurrency 2
#
# Variables: those of start-worker.sh (RAY_HEAD_ADDRESS, Ray auth, RAY_NODE_IP, RAY_TEMP_DIR, AUTOML_HOME),
# and the service's own: AUTOML_DB_URL, AUTOML_STORAGE_URL, MLFLOW_TRACKING_URI (RAY_ADDRESS and
# RAY_HEAD_ADDRESS default to each other). AUTOML_COMMAND: the `automl` command (default: automl on PATH).
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")

# Either variable names the head; RAY_HEAD_ADDRESS wins for the node, RAY_ADDRESS (if set) for the driver.
export RAY_HEAD_ADDRESS=${RAY_HEAD_ADDRESS:-${RAY_ADDRESS:-}}
address=${RAY_ADDRESS:-$RAY_HEAD_ADDRESS}
env -u RAY_ADDRESS RAY_BLOCK=0 RAY_NUM_CPUS=0 RAY_NUM_GPUS=0 RAY_RESOURCES='' bash "$here/start-worker.sh"
export RAY_ADDRESS=$address
exec "${AUTOML_COMMAND:-automl}" worker "$@"
