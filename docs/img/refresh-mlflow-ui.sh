#!/usr/bin/env bash
# Refresh docs/img/mlflow-ui.png: run the MLflow UI test (a real job, MLflow's UI server,
# headless Chromium) and copy the screenshot it took of the job's experiment. The test itself
# never writes into the repository; this script does, when you ask it to.
set -euo pipefail
cd "$(dirname "$0")/../.."

shots=$(mktemp -d)
trap 'rm -rf "$shots"' EXIT
.venv/bin/python -m pytest -q tests/automl/tracking/test_mlflow_ui.py --basetemp="$shots"
cp "$shots"/test_mlflow_ui_shows_the_job_i0/screens/experiment.png docs/img/mlflow-ui.png
echo "docs/img/mlflow-ui.png refreshed"
