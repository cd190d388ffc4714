#!/usr/bin/env bash
# Install the project and its test tools into .venv (if not there yet), then run the tests.
# Usage: bash scripts/test.sh [pytest arguments]      e.g.  bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
# The tests run on what a fresh install resolves today (the newest versions pyproject.toml allows),
# not on whatever an older .venv holds: optuna 5.1 broke nsga2 while a kept venv still had 5.0.
# A new venv (CI's clean clone) resolves fresh; a kept one is upgraded to the same resolve.
upgrade=(--upgrade --upgrade-strategy eager)
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  upgrade=()
fi
# torch==2.13.0 is the CPU wheel on these machines; pip skips what is already installed.
.venv/bin/python -m pip install -q "${upgrade[@]}" -e '.[dev]'
# What was resolved, in one line, so a CI log says which versions were tested.
.venv/bin/python -m pip list --format=freeze 2>/dev/null \
  | grep -iE '^(optuna|ray|mlflow|torch|sqlalchemy|alembic|pydantic)==' | tr '\n' ' ' | sed 's/^/tested with: /; s/ $/\n/'

# The PostgreSQL tests start their own server (tests/postgres.py); this installs the binaries if missing.
bash scripts/ensure-postgres.sh
# The MLflow UI test drives Debian's Chromium through Playwright; this installs the browser if missing.
# Without it only that test fails (CI) or skips (elsewhere), saying why, so the other tests still run.
bash scripts/ensure-chromium.sh || echo "chromium: not available; tests/automl/tracking/test_mlflow_ui.py will say what to do" >&2

# Two processes, a test file to each (pytest-xdist): on 2 cores the whole suite took about 20 % less time than one
# test after the other (20:54 against 25:47, 2026-12-05); the machine is then busy (load 4-9), so more would not help. loadfile keeps a file's module-scoped set-ups (the benchmark smokes' batch, the
# topology) in one process. TEST_WORKERS=0 runs them in this process, one at a time; a later -n in "$@" wins too.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
