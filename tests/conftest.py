"""Shared fixtures: one Ray instance for the whole run, and a fresh state directory per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tune's own per-trial loggers and console tables are off in the service; keep tests the same.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

SERVICE_ENV = ("AUTOML_HOME", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "AUTOML_SPACES_PATH")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray with 2 CPUs, started once: ``ray.init`` costs seconds, and the engine reuses it."""
    import logging

    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture
def automl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty state directory; no outside service configured."""
    for name in SERVICE_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "automl-home"
    monkeypatch.setenv("AUTOML_HOME", str(home))
    return home
