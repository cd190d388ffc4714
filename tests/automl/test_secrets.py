"""Secrets: a password in AUTOML_DB_URL, AUTOML_STORAGE_URL or MLFLOW_TRACKING_URI never appears in
what the service writes or prints.

One real job runs against a real PostgreSQL server through passworded URLs, the password given
either in the user part (``user:pw@host``) or in the query string (``?password=pw``); then
everything it produced is searched for the password: the CLI's output (tables and JSON), the log
records, every file under AUTOML_HOME (MLflow artifacts such as ``job/spec.yaml`` included, and
Tune's pickles), and every row of the three databases (job rows and events, the Optuna study,
MLflow's params, tags and experiments). The server trusts loopback connections, so it accepts the password
without checking it: what is under test is where the URL goes, not the server's authentication.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from automl.cli import EXIT_FAILED, EXIT_INVALID, app
from automl.settings import redact_url, url_has_password
from automl.spec import parse_spec, spec_to_yaml

pytestmark = pytest.mark.slow

USER = "automl_secret"
# Unique per run, so a hit can only come from this test's URLs.
PASSWORD = f"pw-{uuid.uuid4().hex[:16]}"

OBJECTIVE = """
def objective(params, ctx):
    if params["x"] > 0.9:
        raise ValueError("x too large for this toy objective")
    for step in range(1, ctx.max_epochs + 1):
        ctx.report(loss=(params["x"] - 0.3) ** 2 + 1.0 / step, step=step)
"""


def _with_password(host_port_db: str, form: str, password: str = PASSWORD) -> str:
    """A PostgreSQL URL for ``USER`` with ``password`` in its user part or in its query string."""
    if form == "userinfo":
        return f"postgresql+psycopg2://{USER}:{password}@{host_port_db}"
    return f"postgresql+psycopg2://{USER}@{host_port_db}?password={password}"


@pytest.fixture(params=["userinfo", "query"])
def passworded_urls(
    request: pytest.FixtureRequest, postgres_server, automl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Three databases owned by a role with a password; the service pointed at them by URL, the
    password given in the URLs' user part or in their query string (libpq's ``password=``)."""
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
    urls = {
        kind: _with_password(f"{postgres_server.host}:{postgres_server.port}/{name}", request.param)
        for kind, name in names.items()
    }
    monkeypatch.setenv("AUTOML_DB_URL", urls["jobs"])
    monkeypatch.setenv("AUTOML_STORAGE_URL", urls["studies"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", urls["mlflow"])
    yield {**urls, **{f"{kind}_db": name for kind, name in names.items()}, "form": request.param}
    for name in names.values():
        with contextlib.suppress(Exception):  # tidiness only
            postgres_server.drop_database(name)


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
                cur.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')  # names from the catalog
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
    job_file.write_text(
        yaml.safe_dump(
            {
                "name": "secrets",
                "objective": "secret_objective:objective",
                "space": {"x": {"type": "float", "low": 0, "high": 1}},
                "metric": "loss",
                "mode": "min",
                "scheduler": {"name": "fifo"},
                "budget": {"trials": 3, "max_epochs": 2},
                "resources": {"max_concurrent": 1},
                "seed": 3,
            }
        )
    )
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

    form = passworded_urls["form"]
    studies_shown = redact_url(passworded_urls["studies"])
    assert "***" in studies_shown and PASSWORD not in studies_shown
    # `automl run` prints where the study is, as a table (one form) or as JSON (the other).
    if form == "userinfo":
        ran = json.loads(cli("run", str(job_file), "--json", "--no-progress"))
        result = ran["result"]
        assert result["storage_url"] == studies_shown and result["tracking_uri"] == redact_url(passworded_urls["mlflow"])
    else:
        printed = cli("run", str(job_file), "--no-progress")
        assert studies_shown in printed.replace("\n", ""), printed
    [job] = json.loads(cli("list", "--json"))
    job_id = job["id"]
    assert job["state"] == "succeeded", job
    cli("worker", "--until-idle", "--poll", "0.2")  # names its job store
    for command in (("status", job_id), ("list",), ("best", job_id)):
        cli(*command)
        cli(*command, "--json")
    cli("validate", str(job_file))
    # Errors that name a service: each must show its URL with the password hidden.
    down = _with_password("127.0.0.1:1/nowhere", form)
    cli("list", "--db-url", down, code=EXIT_FAILED)
    cli("best", job_id, "--storage-url", down, code=None)
    with monkeypatch.context() as env:  # the same, given the way the user gave it
        env.setenv("AUTOML_DB_URL", down)
        outputs["AUTOML_DB_URL=down list"] = runner.invoke(app, ["list"]).output
    # An unencoded '@' in a password: SQLAlchemy would end the password there and connect to the
    # "host" `<rest of the password>@127.0.0.1`, which the driver's error would name.
    split = _with_password("127.0.0.1:1/nowhere", "userinfo", password=f"pa@{PASSWORD}")
    cli("list", "--db-url", split, code=EXIT_INVALID)
    assert "%40" in outputs[f"list --db-url {split}"], "the error says how to write the '@'"
    # (An unreachable tracking server given with a password: tests/automl/cli/test_cli_errors.py.)
    for command, text in outputs.items():
        assert PASSWORD not in text, f"`automl {command}` printed the password:\n{text}"
    assert "***" in outputs[f"list --db-url {down}"], "the error names the database, password hidden"
    assert "***" in outputs["AUTOML_DB_URL=down list"] and "127.0.0.1:1/nowhere" in outputs["AUTOML_DB_URL=down list"]

    # The parent run's tags, as anyone with the MLflow UI reads them: the storage is named, hidden.
    from mlflow import MlflowClient

    parent = MlflowClient(tracking_uri=passworded_urls["mlflow"]).get_run(job["mlflow_run_id"])
    assert parent.data.tags["automl.optuna_storage"] == studies_shown
    assert passworded_urls["studies_db"] in studies_shown, "the tag still says which database holds the study"
    assert not [k for k, v in {**parent.data.tags, **parent.data.params}.items() if PASSWORD in v]

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
        "postgresql://bob:s3@cr3t@db/jobs",  # '@' not escaped: SQLAlchemy's own parser splits at it
        "https://bob:s3@cr3t@mlflow.internal:5000",
        "postgresql://bob:s3/cr3t@db/jobs",  # '/' and ':' not escaped
        "https://bob:s3:cr/3t@mlflow.internal",
        "mysql://bob:s3cr3t@db:notaport/jobs",  # neither parser reads it
        "postgresql://bob@db:5432/jobs?password=s3cr3t",  # libpq's keyword in the query string
        "postgresql://bob@db/jobs?sslmode=require&password=s3cr3t&application_name=x",
        "mysql+pymysql://bob@db/jobs?passwd=s3cr3t",
        "postgresql://bob@db/jobs?PassWord=s3cr3t",
        "postgresql://bob@db/jobs?sslpassword=s3cr3t",
        "https://bob@mlflow.internal/api?token=s3cr3t",
        "postgresql://bob:x@db/jobs?password=s3cr3t",
    ):
        redacted = redact_url(url)
        assert "s3" not in redacted and "cr3t" not in redacted and "***" in redacted, redacted
        assert "bob" in redacted, "the user stays: it helps to say who connects"
        assert url_has_password(url), url
    # What is shown is the URL, the password as *** and nothing else changed.
    assert redact_url("postgresql://bob:s3@cr3t@db:5432/jobs") == "postgresql://bob:***@db:5432/jobs"
    assert (
        redact_url("postgresql://bob@db/jobs?sslmode=require&password=s3cr3t&host=/run/pg")
        == "postgresql://bob@db/jobs?sslmode=require&password=***&host=/run/pg"
    )
    assert redact_url("https://bob:s3/cr3t@mlflow.internal:5000/x") == "https://bob:***@mlflow.internal:5000/x"
    for url in (  # no password: the URL as given
        "sqlite:////tmp/jobs.db",
        "sqlite:////tmp/a:b@c/jobs.db",  # a path may hold ':' and '@'
        "postgresql://bob@db:5432/jobs?sslmode=require&application_name=a@b",
        "https://mlflow.internal:5000/path",
        "databricks://profile:prefix",
        "/tmp/mlruns",
        "postgresql://bob@db/jobs?password=",
    ):
        assert redact_url(url) == url and not url_has_password(url), url


def test_a_tracking_server_named_by_automl_ui_hides_its_password(automl_home: Path) -> None:
    result = CliRunner().invoke(app, ["ui", "--tracking-uri", "https://bob:s3cr3t@mlflow.internal:5000"])
    assert result.exit_code == 0, result.output
    assert "https://bob:***@mlflow.internal:5000" in result.output and "s3cr3t" not in result.output


def test_automl_ui_hands_a_database_store_s_password_to_mlflow_by_environment_not_command_line(
    automl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MLflow UI runs as its own command: its arguments are readable by every user of the machine
    (ps, /proc/PID/cmdline), its environment only by its owner. (os.execv is stopped here, in the CLI.)"""

    class Executed(Exception):
        pass

    seen: dict[str, object] = {}

    def execv(path: str, argv: list[str]) -> None:
        seen.update(argv=list(argv), env=os.environ.get("MLFLOW_BACKEND_STORE_URI"))
        raise Executed

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    uri = "postgresql://bob:s3cr3t@127.0.0.1:1/mlflow"
    result = CliRunner().invoke(app, ["ui", "--tracking-uri", uri])
    assert isinstance(result.exception, Executed), result.output
    argv = seen["argv"]
    assert isinstance(argv, list) and argv[1:4] == ["-m", "mlflow", "ui"] and "--backend-store-uri" not in argv
    assert not any("s3cr3t" in str(arg) for arg in argv)
    assert seen["env"] == uri
    assert "s3cr3t" not in result.output and "bob:***@127.0.0.1:1" in result.output


@pytest.mark.parametrize("uri", ["postgresql://bob:s3cr3t@db/mlflow", "postgresql://bob@db/mlflow?password=s3cr3t"])
def test_a_job_file_may_not_carry_a_password(tmp_path: Path, automl_home: Path, uri: str) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "trainer": {"name": "mlp", "dataset": "iris"},
                "space": "mlp-small",
                "tracking": {"tracking_uri": uri},
            }
        )
    )
    result = CliRunner().invoke(app, ["validate", str(job)])
    assert result.exit_code == EXIT_INVALID
    assert "tracking.tracking_uri" in result.output and "MLFLOW_TRACKING_URI" in result.output
    assert "s3cr3t" not in result.output


def test_spec_as_written_hides_a_password_given_in_code() -> None:
    # automl.search(tracking_uri=...) puts the URI in the spec; the copy logged to MLflow hides it.
    spec = parse_spec(
        {
            "name": "x",
            "trainer": {"name": "mlp", "dataset": "iris"},
            "space": "mlp-small",
            "tracking": {"tracking_uri": "postgresql://bob:s3cr3t@db/mlflow"},
        }
    )
    written = spec_to_yaml(spec)
    assert "s3cr3t" not in written and "postgresql://bob:***@db/mlflow" in written
    spec = parse_spec(
        {
            "name": "x",
            "trainer": {"name": "mlp", "dataset": "iris"},
            "space": "mlp-small",
            "tracking": {"tracking_uri": "postgresql://bob@db/mlflow?password=s3cr3t"},
        }
    )
    written = spec_to_yaml(spec)
    assert "s3cr3t" not in written and "postgresql://bob@db/mlflow?password=***" in written
