"""Alembic environment for the job store: runs on the connection the store hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from automl.store.schema import metadata

VERSION_TABLE = "automl_alembic_version"  # Optuna and MLflow keep their own alembic_version


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        url = context.config.get_main_option("sqlalchemy.url")
        if url is None:
            raise RuntimeError(
                "alembic: no connection was handed over and sqlalchemy.url is not set; run migrations through the job store"
            )
        engine = create_engine(url)
        with engine.begin() as connection:
            _run(connection)
        return
    _run(connection)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
