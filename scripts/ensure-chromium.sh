#!/usr/bin/env bash
# Make sure a Chromium browser is at /usr/bin/chromium (or $AUTOML_CHROMIUM); the MLflow UI test
# (tests/automl/tracking/test_mlflow_ui.py) drives it headless through Playwright's Python package.
# Idempotent: installs the Debian `chromium` package only when the browser is missing, and only
# when running as root. Never runs `playwright install` (it downloads browsers from the internet).
set -euo pipefail

browser=${AUTOML_CHROMIUM:-/usr/bin/chromium}

if [ -x "$browser" ]; then
  echo "chromium: using $browser"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "chromium: $browser not found and not root; install Debian's browser, e.g." \
       "'sudo apt-get install chromium', or point AUTOML_CHROMIUM at a Chromium binary, then rerun." >&2
  exit 1
fi

echo "chromium: $browser missing; installing the Debian 'chromium' package..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null

if [ ! -x "$browser" ]; then
  echo "chromium: installed the 'chromium' package but $browser is still missing" >&2
  exit 1
fi
echo "chromium: installed; using $browser ($("$browser" --version 2>/dev/null || echo 'version unknown'))"
