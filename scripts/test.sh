#!/usr/bin/env bash
# Install the project and its test tools into .venv (if not there yet), then run the tests.
# Usage: bash scripts/test.sh [pytest arguments]      e.g.  bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# torch==2.13.0 is the CPU wheel on these machines; pip skips what is already installed.
.venv/bin/python -m pip install -q -e '.[dev]'

# The PostgreSQL tests start their own server (tests/postgres.py); this installs the binaries if missing.
bash scripts/ensure-postgres.sh
# The MLflow UI test drives Debian's Chromium through Playwright; this installs the browser if missing.
# Without it only that test fails (CI) or skips (elsewhere), saying why, so the other tests still run.
bash scripts/ensure-chromium.sh || echo "chromium: not available; tests/automl/test_mlflow_ui.py will say what to do" >&2

exec .venv/bin/python -m pytest "$@"
