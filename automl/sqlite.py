"""How the service's local SQLite databases are set up: one place for the pragmas.

Every local database (the job store, the Optuna study storage, the MLflow tracking store) runs in
WAL mode: a commit appends to the log and syncs it once instead of syncing the disk several times,
and readers (``automl status``, the MLflow UI) no longer block the one writer. WAL is durable
against a crash of the process (kill -9 included); the mode is kept in the database file.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)


def set_up_connections(
    engine: Engine, *, synchronous: str | None = None, busy_timeout_ms: int | None = None, foreign_keys: bool = False
) -> None:
    """WAL, and the pragmas given, on every connection ``engine`` opens from now on.

    Args:
        synchronous: e.g. ``"NORMAL"``: in WAL mode a commit is then durable against a crash of the
            process, though the last commits may be lost if the machine loses power.
        busy_timeout_ms: how long a writer waits for another's lock instead of failing at once.
        foreign_keys: enforce the schema's foreign keys (SQLite does not by default).
    """
    statements = ["PRAGMA journal_mode=WAL"]
    if synchronous is not None:
        statements.append(f"PRAGMA synchronous={synchronous}")
    if busy_timeout_ms is not None:
        statements.append(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    if foreign_keys:
        statements.append("PRAGMA foreign_keys=ON")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()

    event.listen(engine, "connect", on_connect)


def set_wal_on_file(database: str) -> None:
    """Put the SQLite file at ``database`` in WAL mode, for a database another library's engine opens
    (MLflow's tracking store). A file that cannot be switched (read-only, locked) is left as it is."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL").fetchall()
    except sqlite3.Error as exc:
        logger.debug("SQLite database %s left in its journal mode: %s", database, exc)


__all__ = ["set_up_connections", "set_wal_on_file"]
