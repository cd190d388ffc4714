"""The PostgreSQL fixtures: a real server, and a fresh, empty database per ``postgres_url``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa


def test_postgres_url_is_a_working_postgresql_database(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            assert "PostgreSQL" in conn.execute(sa.text("SELECT version()")).scalar_one()
            conn.execute(sa.text("CREATE TABLE jobs (id serial PRIMARY KEY, name text NOT NULL, payload jsonb)"))
            conn.execute(
                sa.text("INSERT INTO jobs (name, payload) VALUES (:name, CAST(:payload AS jsonb))"),
                [{"name": "a", "payload": '{"lr": 0.1}'}, {"name": "b", "payload": '{"lr": 0.01}'}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name, payload FROM jobs ORDER BY id")).all()
        assert [(r.id, r.name, r.payload) for r in rows] == [(1, "a", {"lr": 0.1}), (2, "b", {"lr": 0.01})]
    finally:
        engine.dispose()


_seen_urls: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_each_postgres_url_is_a_new_empty_database(postgres_url: str, round_: int) -> None:
    # Two tests in a row: the second gets another database, and does not see the first one's table.
    assert postgres_url not in _seen_urls
    _seen_urls.append(postgres_url)
    engine = sa.create_engine(postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE left_behind (x int)"))
    finally:
        engine.dispose()


def test_server_survives_restart(postgres_server, postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (x int)"))
            conn.execute(sa.text("INSERT INTO kept VALUES (42)"))
        postgres_server.restart()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM kept")).scalar_one() == 42
    finally:
        engine.dispose()
