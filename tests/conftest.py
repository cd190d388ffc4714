"""Shared fixtures: one Ray instance for the whole run, a fresh state directory per test, and one
throwaway PostgreSQL server for the whole run with a fresh database per test."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tune's own per-trial loggers and console tables are off in the service; keep tests the same.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

# tests/ itself is importable (tests/controls.py, tests/postgres.py, tests/raycluster.py), whatever pytest's import mode.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

SERVICE_ENV = (
    "AUTOML_HOME",
    "AUTOML_STORAGE_URL",
    "AUTOML_TRIAL_STORAGE",
    "AUTOML_DATA_CACHE",
    "MLFLOW_TRACKING_URI",
    "RAY_ADDRESS",
    "AUTOML_SPACES_PATH",
)


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
    monkeypatch.setenv("AUTOML_DATA_CACHE", str(tmp_path / "data-cache"))  # not the user's ~/.cache
    return home


@pytest.fixture(scope="session")
def mlflow_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite tracking store, made once by MLflow itself (as a first run makes one).

    MLflow makes a new SQLite store by creating its first tables and then running every Alembic
    migration since (69 in MLflow 3.x): 2-5 s on the 2-core test machine, mostly waiting on the
    disk. A test about the runner, not about a first run, starts from a copy (``tracked_home``).
    """
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    with contextlib.chdir(path.parent):  # MLflow's Default experiment points at ./mlruns: here, not the tests' folder
        MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracked_home(automl_home: Path, mlflow_store_template: Path) -> Path:
    """``automl_home``, made, with a copy of ``mlflow_store_template`` as its MLflow store (the default
    ``mlflow.db``): a state directory after its first tracked job. Each job makes its own experiment
    and runs in it as ever; only MLflow's one-time making of its schema is skipped. For tests about
    the runner or the search, not about a first run: ``automl_home`` alone stays a fresh state directory.
    """
    automl_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mlflow_store_template, automl_home / "mlflow.db")
    return automl_home


# -- PostgreSQL ------------------------------------------------------------------------------------

_database_numbers = itertools.count(1)


def _postgres_helper():
    """tests/postgres.py, importable whatever pytest's import mode."""
    tests_dir = str(Path(__file__).resolve().parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    import postgres

    return postgres


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server (tests/postgres.py) for the whole run, stopped and deleted at the end.

    Missing binaries fail the tests that use it rather than skip them: CI must run them.
    """
    pg = _postgres_helper()
    problem = None
    try:
        server = pg.start_server()
    except pg.PostgresNotFound as exc:
        problem = str(exc)
    except pg.PostgresError as exc:
        problem = f"could not start the test PostgreSQL server: {exc}"
    if problem is not None:  # failed outside the except block: no chained traceback in the report
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server, request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty database on ``postgres_server``, dropped after the test.

    The form is ``postgresql+psycopg2://postgres@127.0.0.1:PORT/t<N>_<test name>`` (no password).
    """
    test_name = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())
    name = f"t{next(_database_numbers)}_{test_name}"[:63]
    url = postgres_server.new_database(name)
    yield url
    # Tidiness only (the whole server goes at the end of the run); WITH (FORCE): the test's open connections don't block it.
    with contextlib.suppress(Exception):
        postgres_server.drop_database(name)


STORE_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The job store's URL on each backend: the same behaviour must hold on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("postgres_url")


# -- Ray cluster -----------------------------------------------------------------------------------


def _raycluster_helper():
    """tests/raycluster.py, importable whatever pytest's import mode."""
    tests_dir = str(Path(__file__).resolve().parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    import raycluster

    return raycluster


@pytest.fixture(scope="session")
def ray_cluster():
    """A real two-node Ray cluster (tests/raycluster.py: `ray start` head + worker node, 1 CPU each)
    for the whole run, torn down at the end by signalling its own processes (never `ray stop`).

    Drive it from a subprocess with ``env=ray_cluster.driver_env(...)``: RAY_ADDRESS plus the
    cluster's token-auth variables. Failing to start fails the tests that use it: CI must run them.
    """
    rc = _raycluster_helper()
    problem = None
    try:
        cluster = rc.start_cluster()
    except rc.RayClusterError as exc:
        problem = f"could not start the test Ray cluster: {exc}"
    if problem is not None:  # failed outside the except block: no chained traceback in the report
        pytest.fail(problem, pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


# -- S3 --------------------------------------------------------------------------------------------


def _s3server_helper():
    """tests/s3server.py, importable whatever pytest's import mode."""
    tests_dir = str(Path(__file__).resolve().parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    import s3server

    return s3server


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-protocol server (tests/s3server.py: moto's server mode in a subprocess on loopback)
    for the whole run, with one bucket (``s3_server.bucket``), stopped at the end.

    ``s3_server.env`` holds what a process needs to use it (``AWS_ENDPOINT_URL``, the keys, the
    region, ``MLFLOW_S3_ENDPOINT_URL``): ``monkeypatch.setenv`` each for this process, or merge it
    into a subprocess's environment. ``s3_server.uri("prefix")`` is ``s3://BUCKET/prefix`` (give each
    test its own prefix); ``s3_server.keys("prefix")`` lists what is there. Failing to start fails
    the tests that use it: CI must run them.
    """
    s3 = _s3server_helper()
    problem = None
    try:
        server = s3.start_server()
    except s3.S3ServerError as exc:
        problem = f"could not start the test S3 server: {exc}"
    if problem is not None:  # failed outside the except block: no chained traceback in the report
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.stop()
