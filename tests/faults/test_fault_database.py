"""The databases are briefly unavailable while a job runs: SQLite locked by another process
(an exclusive transaction held for seconds, on the job store and the Optuna study at once), and
the PostgreSQL job store restarted with ``pg_ctl restart``. The runner waits and retries with
backoff; the job ends in the right state with every record in agreement."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import STEADY, assert_records_agree, job_spec, objective_module, run_queue, settings_for, submit, wait_for

pytestmark = pytest.mark.slow


def in_background(fault: Callable[[], None]) -> Callable[[], None]:
    """Start ``fault`` in a thread; return a function that joins it and re-raises what it raised."""
    problems: list[BaseException] = []

    def run() -> None:
        try:
            fault()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            problems.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> None:
        thread.join(timeout=120)
        assert not thread.is_alive() and not problems, problems

    return join


def hold_exclusive(paths: list[Path], seconds: float) -> None:
    """Hold an exclusive SQLite transaction on every database in ``paths`` for ``seconds``."""
    connections = []
    try:
        for path in paths:
            connection = sqlite3.connect(path, timeout=60, isolation_level=None)
            connection.execute("BEGIN EXCLUSIVE")
            connections.append(connection)
        time.sleep(seconds)
    finally:
        for connection in connections:
            connection.execute("ROLLBACK")
            connection.close()


@pytest.mark.usefixtures("tracked_home")  # its MLflow store made already: not a first run
def test_sqlite_locked_at_claim_and_mid_job(automl_home: Path, ray_session: None, tmp_path: Path) -> None:
    from automl.service import open_job_store

    settings = settings_for(automl_home)
    ref = objective_module(tmp_path, STEADY)
    job_id = submit(settings, job_spec("locked", ref, trials=4, budget={"max_epochs": 2}), tmp_path)
    store = open_job_store(settings)
    jobs_db, studies_db = automl_home / "jobs.db", automl_home / "studies.db"

    def locks() -> None:
        hold_exclusive([jobs_db], 3)  # the runner's claim waits for it
        wait_for(lambda: store.get(job_id).trials_finished >= 1, 180, "a finished trial")
        wait_for(studies_db.exists, 10, "the study database")
        hold_exclusive([jobs_db, studies_db], 4)  # heartbeats, progress, Optuna's tells wait

    join = in_background(locks)
    time.sleep(0.5)  # the lock is held before the runner starts
    run_queue(settings, lease_s=6)
    join()

    records = assert_records_agree(settings, job_id, trials=4)
    assert records.job.state == "succeeded", records.job.error
    assert {t.state.name for t in records.trials} == {"COMPLETE"}
    assert records.job.attempts == 1, "the lease held through the lock: no reclaim"


def test_postgresql_job_store_and_study_restarted_mid_job(
    automl_home: Path, ray_session: None, tmp_path: Path, postgres_server, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automl.service import open_job_store
    from automl.store.jobs import utcnow

    # The job store and the Optuna study both on the server that restarts (they share a database).
    monkeypatch.setenv("AUTOML_DB_URL", postgres_url)
    monkeypatch.setenv("AUTOML_STORAGE_URL", postgres_url)
    settings = settings_for(automl_home)
    assert settings.db_url == settings.storage_url == postgres_url
    ref = objective_module(tmp_path, STEADY)
    job_id = submit(settings, job_spec("pg-restart", ref, trials=4, budget={"max_epochs": 2}), tmp_path)
    store = open_job_store(settings)
    restarted: list[float] = []
    back_at: list = []

    def restart() -> None:
        wait_for(lambda: store.get(job_id).trials_finished >= 1, 180, "a finished trial")
        started = time.monotonic()
        postgres_server.restart()  # pg_ctl restart -m fast: every connection is cut
        restarted.append(time.monotonic() - started)
        back_at.append(utcnow())

    join = in_background(restart)
    run_queue(settings, lease_s=9)
    join()
    assert restarted, "the server was never restarted"

    records = assert_records_agree(settings, job_id, trials=4)
    assert records.job.state == "succeeded", records.job.error
    assert {t.state.name for t in records.trials} == {"COMPLETE"}
    assert records.event_kinds()[-1] == "succeeded"
    assert back_at[0] < records.job.finished_at, "the restart happened while the job ran"
