"""The job database's schema version: the Alembic migrations in ``migrations/``, run up to head.

The job tables' queries and updates are :mod:`automl.store.jobs`'s alone; this module only moves
their schema, through the migrations, and reads its version, kept in a version table of its own
(Optuna and MLflow keep their own ``alembic_version`` in a shared database). What must stay true: a database already at head is
recognised with one SELECT and no Alembic import (every open of the store asks); a transient
database error is raised, never taken for "no schema yet"; on PostgreSQL, processes opening an
empty database at once migrate it one at a time (an advisory lock), so none fails on another's tables.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from automl.errors import is_transient
from automl.store.schema import HEAD_REVISION

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "automl_alembic_version"
# The PostgreSQL advisory lock the migrations run under (any fixed number; this one spells "automl").
MIGRATION_LOCK_KEY = 0x6175746F6D6C


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` (skipped when already there)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    with engine.connect() as connection:
        current = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    if revision == "head" and current == script.get_current_head():
        return
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Servers and runners starting together on an empty database: one migrates, the others
            # wait here, then find it done (Alembic reads the version again on this connection).
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def at_head(engine: Engine) -> bool:
    """Whether the database is already at :data:`HEAD_REVISION`, read with one SELECT and no Alembic."""
    try:
        with engine.connect() as connection:
            return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [HEAD_REVISION]
    except DBAPIError as exc:
        if is_transient(exc):
            raise  # the database is unreachable or busy: retried (or reported) by the caller
        return False  # no version table yet: Alembic creates everything


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (``None`` for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
