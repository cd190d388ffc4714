"""Secrets: a password in AUTOML_DB_URL, AUTOML_STORAGE_URL or MLFLOW_TRACKING_URI never appears in
what the service writes or prints.

One real job runs against a real PostgreSQL server through passworded URLs; then everything it
produced is searched for the password: the CLI's output (tables and JSON), the log records, every
file under AUTOML_HOME (MLflow artifacts such as ``job/spec.yaml`` included, and Tune's pickles),
and every row of the three databases (job rows and events, the Optuna study, MLflow's params,
tags and experiments). The server trusts loopback connections, so it accepts the password
without checking it: what is under test is where the URL goes, not the server's authentication.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from automl.cli import EXIT_FAILED, EXIT_INVALID, app
from automl.settings import redact_url
from automl.spec import parse_spec, spec_to_yaml

pytestmark = pytest.mark.slow

USER = "automl_secret"
# Unique per run, so a hit can only come from this test's URLs.
PASSWORD = f"pw-{uuid.uuid4().hex[:16]}"

OBJECTIVE = '''
def objective(params, ctx):
    if params["x"] > 0.9:
        raise ValueError("x too large for this toy objective")
    for step in range(1, ctx.max_epochs + 1):
        ctx.report(loss=(params["x"] - 0.3) ** 2 + 1.0 / step, step=step)
'''


@pytest.fixture
def passworded_urls(postgres_server, automl_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Three databases owned by a role with a password; the service pointed at them by URL."""
    from psycopg2 import sql

    names = {kind: f"secret_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("jobs", "studies", "mlflow")}
    for name in names.values():
        postgres_server.new_database(name)
    conn = postgres_server.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (USER,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(USER)), (PASSWORD,))
        for name in names.values():
            cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(USER)))
    conn.close()
    base = f"postgresql+psycopg2://{USER}:{PASSWORD}@{postgres_server.host}:{postgres_server.port}"
    urls = {kind: f"{base}/{name}" for kind, name in names.items()}
    monkeypatch.setenv("AUTOML_DB_URL", urls["jobs"])
    monkeypatch.setenv("AUTOML_STORAGE_URL", urls["studies"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", urls["mlflow"])
    yield {**urls, **{f"{kind}_db": name for kind, name in names.items()}}
    for name in names.values():
        try:
            postgres_server.drop_database(name)
        except Exception:  # noqa: BLE001 - tidiness only
            pass


def _database_text(postgres_server, database: str) -> str:
    """Every row of every table of ``database``, as JSON text."""
    import psycopg2

    conn = psycopg2.connect(**postgres_server.dsn(database))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = [row[0] for row in cur.fetchall()]
            chunks = []
            for table in tables:
                cur.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')  # noqa: S608 - names from the catalog
                chunks.extend(row[0] for row in cur.fetchall())
        return "\n".join(chunks)
    finally:
        conn.close()


def _files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_passwords_never_leave_the_urls(
    passworded_urls: dict[str, str],
    postgres_server,
    automl_home: Path,
    tmp_path: Path,
    ray_session: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret_objective.py").write_text(OBJECTIVE)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({
        "name": "secrets",
        "objective": "secret_objective:objective",
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "metric": "loss",
        "mode": "min",
        "scheduler": {"name": "fifo"},
        "budget": {"trials": 3, "max_epochs": 2},
        "resources": {"max_concurrent": 1},
        "seed": 3,
    }))
    runner = CliRunner()
    outputs: dict[str, str] = {}

    def cli(*args: str, code: int | None = 0) -> str:
        result = runner.invoke(app, list(args))
        text = result.output  # stdout and stderr together
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            text += repr(result.exception)
        outputs[" ".join(args)] = text
        if code is not None:
            assert result.exit_code == code, f"automl {' '.join(args)}: {text}"
        return result.stdout

    ran = json.loads(cli("run", str(job_file), "--json", "--no-progress"))
    job_id = ran["job"]["id"]
    assert ran["job"]["state"] == "succeeded", ran["job"]
    cli("worker", "--until-idle", "--poll", "0.2")  # names its job store
    for command in (("status", job_id), ("list",), ("best", job_id)):
        cli(*command)
        cli(*command, "--json")
    cli("validate", str(job_file))
    # Errors that name a service: each must show its URL with the password hidden.
    down = f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:1/nowhere"
    cli("list", "--db-url", down, code=EXIT_FAILED)
    cli("best", job_id, "--storage-url", down, code=None)
    # (An unreachable tracking server given with a password: tests/automl/test_cli_errors.py.)
    for command, text in outputs.items():
        assert PASSWORD not in text, f"`automl {command}` printed the password:\n{text}"
    assert "***" in outputs[f"list --db-url {down}"], "the error names the database, password hidden"

    logged = "\n".join(f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert PASSWORD not in logged, "a log record holds the password"
    assert automl_home.exists() and not _files_holding(automl_home, PASSWORD.encode()), "a file under AUTOML_HOME"
    for kind in ("jobs", "studies", "mlflow"):
        text = _database_text(postgres_server, passworded_urls[f"{kind}_db"])
        assert text, f"the {kind} database is empty: the job did not run against it"
        assert PASSWORD not in text, f"a row of the {kind} database holds the password"
    # The job really went through these databases and MLflow holds its spec.
    assert "spec.yaml" in "".join(str(p) for p in (automl_home / "artifacts").rglob("*"))


def test_redact_url_hides_every_kind_of_password() -> None:
    for url in (
        "postgresql+psycopg2://bob:s3cr3t@db:5432/jobs",
        "postgresql://bob:s3cr3t@db/jobs?sslmode=require",
        "mysql+pymysql://bob:s3cr3t@db/jobs",
        "http://bob:s3cr3t@mlflow.internal:5000",
        "https://bob:s3cr3t@mlflow.internal",
        "postgresql://bob:s3%40cr3t@db/jobs",  # '@' escaped in the password
    ):
        redacted = redact_url(url)
        assert "s3cr3t" not in redacted and "s3%40cr3t" not in redacted and "***" in redacted, redacted
        assert "bob" in redacted, "the user stays: it helps to say who connects"
    assert redact_url("sqlite:////tmp/jobs.db") == "sqlite:////tmp/jobs.db"


def test_a_job_file_may_not_carry_a_password(tmp_path: Path, automl_home: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "name": "x", "trainer": {"name": "mlp", "dataset": "iris"}, "space": "mlp-small",
        "tracking": {"tracking_uri": "postgresql://bob:s3cr3t@db/mlflow"},
    }))
    result = CliRunner().invoke(app, ["validate", str(job)])
    assert result.exit_code == EXIT_INVALID
    assert "tracking.tracking_uri" in result.output and "MLFLOW_TRACKING_URI" in result.output
    assert "s3cr3t" not in result.output


def test_spec_as_written_hides_a_password_given_in_code() -> None:
    # automl.search(tracking_uri=...) puts the URI in the spec; the copy logged to MLflow hides it.
    spec = parse_spec({"name": "x", "trainer": {"name": "mlp", "dataset": "iris"}, "space": "mlp-small",
                       "tracking": {"tracking_uri": "postgresql://bob:s3cr3t@db/mlflow"}})
    written = spec_to_yaml(spec)
    assert "s3cr3t" not in written and "postgresql://bob:***@db/mlflow" in written
