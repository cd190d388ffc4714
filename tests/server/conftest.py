"""The ``server`` fixture (a live ``automl server`` on loopback) from :mod:`server_fixture`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_fixture import server  # noqa: F401 - a fixture, found by name
