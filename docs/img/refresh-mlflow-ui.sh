#!/usr/bin/env bash
# Refresh docs/img/mlflow-ui.png: run the MLflow UI test (a real job, MLflow's UI server,
# headless Chromium) and copy the screenshot it took of the job's experiment. The test keeps its
# screenshots under $AUTOML_TEST_ARTIFACTS/mlflow-ui; here that is a temporary folder, and only
# this script writes into docs/, when you ask it to.
set -euo pipefail
cd "$(dirname "$0")/../.."

shots=$(mktemp -d)
trap 'rm -rf "$shots"' EXIT
AUTOML_TEST_ARTIFACTS="$shots" .venv/bin/python -m pytest -q tests/automl/tracking/test_mlflow_ui.py
cp "$shots"/mlflow-ui/experiment.png docs/img/mlflow-ui.png
echo "docs/img/mlflow-ui.png refreshed"
