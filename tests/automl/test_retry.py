"""The one retry policy (automl/retry.py) and the one SQLite set-up (automl/sqlite.py)."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from automl.retry import retrying
from automl.sqlite import set_up_connections, set_wal_on_file

log = logging.getLogger("test_retry")


class Flaky:
    """Fails ``failures`` times with ``error``, then answers 42."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 42


def busy(exc: BaseException) -> bool:
    return "locked" in str(exc)


def test_a_passing_error_is_retried_with_backoff_until_the_call_answers(caplog: pytest.LogCaptureFixture) -> None:
    call = Flaky(3, RuntimeError("database is locked"))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="test_retry"):
        assert retrying(call, retryable=busy, window_s=5, first_pause_s=0.01, max_pause_s=0.02, what="the db", logger=log) == 42
    assert call.calls == 4
    assert time.monotonic() - started >= 0.01 + 0.02 + 0.02  # the pauses doubled, capped at max_pause_s
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all(line.startswith("the db did not answer (RuntimeError: database is locked)") for line in lines)


def test_any_other_error_is_raised_at_once_as_it_was() -> None:
    call = Flaky(3, ValueError("no such table"))
    with pytest.raises(ValueError, match="no such table"):
        retrying(call, retryable=busy, window_s=5, first_pause_s=0.01, max_pause_s=0.02, what="the db", logger=log)
    assert call.calls == 1


def test_the_window_ends_the_retries_and_the_last_error_is_raised() -> None:
    call = Flaky(1000, RuntimeError("database is locked"))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="locked"):
        retrying(call, retryable=busy, window_s=0.3, first_pause_s=0.05, max_pause_s=0.1, what="the db", logger=log)
    elapsed = time.monotonic() - started
    assert 0.1 < elapsed < 0.3 + 0.2, elapsed  # no pause began that would end past the window
    assert 2 < call.calls < 10


def test_max_attempts_ends_the_retries_too() -> None:
    call = Flaky(1000, RuntimeError("database is locked"))
    with pytest.raises(RuntimeError):
        retrying(call, retryable=busy, window_s=60, first_pause_s=0.01, max_pause_s=0.01, max_attempts=3, what="x", logger=log)
    assert call.calls == 3


def test_every_connection_gets_wal_and_the_pragmas_asked_for(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    set_up_connections(engine, synchronous="NORMAL", busy_timeout_ms=1234, foreign_keys=True)
    for _ in range(2):  # a second connection from the pool's point of view: a fresh one
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 1234
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        engine.dispose()
    plain = create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    set_up_connections(plain)
    with plain.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 0  # only what was asked


def test_a_file_put_in_wal_stays_so_and_a_missing_folder_is_left_alone(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    set_wal_on_file(str(database))
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    set_wal_on_file(str(tmp_path / "missing" / "x.db"))  # cannot be opened: logged at debug, not raised
