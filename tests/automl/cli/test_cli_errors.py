"""Unreachable services: each command says which one, hides passwords, exits 1, queues nothing; and
what the job commands refuse up front (job ids that cannot name one job, a spec's tracking server down)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from automl.cli import EXIT_FAILED, EXIT_INVALID, app

EXAMPLE = str(Path(__file__).resolve().parents[3] / "examples" / "iris.yaml")


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", [["list"], ["status", "abcd"], ["cancel", "abcd"], ["best", "abcd"], ["submit", EXAMPLE]])
def test_unreachable_job_database(command: list[str], automl_home: Path) -> None:
    result = CliRunner().invoke(app, [*command, "--db-url", "postgresql://bob:hunter2@127.0.0.1:1/jobs"])
    assert result.exit_code == EXIT_FAILED
    output = _one_line(result.output)
    assert "the job database postgresql://bob:***@127.0.0.1:1/jobs is unavailable" in output
    assert "hunter2" not in result.output and "Traceback" not in result.output


def test_unreachable_ray_cluster_queues_nothing(automl_home: Path) -> None:
    # A process of its own: this test session's Ray is already up, and a driver keeps its Ray.
    env = {**os.environ, "AUTOML_HOME": str(automl_home)}
    result = subprocess.run(
        [sys.executable, "-m", "automl.cli", "run", EXAMPLE, "--ray-address", "127.0.0.1:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_FAILED
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in _one_line(result.stderr)
    assert not automl_home.exists()


def test_unreachable_tracking_server(automl_home: Path, ray_session: None) -> None:
    result = CliRunner().invoke(app, ["run", EXAMPLE, "--tracking-uri", "http://bob:hunter2@127.0.0.1:1", "--no-progress"])
    assert result.exit_code == EXIT_FAILED
    assert "cannot reach the MLflow tracking server at http://bob:***@127.0.0.1:1" in _one_line(result.output)
    assert "hunter2" not in result.output


# -- what the job commands refuse before they touch anything -------------------------------------


def _iris_spec(folder: Path, **changes: object) -> Path:
    """A small iris job file in ``folder``, with ``changes`` on top."""
    import yaml

    spec = {
        "name": "iris-small",
        "trainer": {"name": "mlp", "dataset": "iris"},
        "space": "mlp-small",
        "metric": "val_accuracy",
        "mode": "max",
        "budget": {"trials": 2, "max_epochs": 1},
        "seed": 3,
        **changes,
    }
    path = folder / f"job-{len(list(folder.glob('job-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _queued_job() -> str:
    """One queued job in the store under $AUTOML_HOME; return its id."""
    from automl.service import open_job_store
    from automl.settings import resolve_settings

    return open_job_store(resolve_settings()).submit(name="only", spec_yaml="name: only\n", trials_total=1).id


def _jobs() -> list[tuple[str, str]]:
    """(id, state) of every job in the store under $AUTOML_HOME."""
    from automl.service import open_job_store
    from automl.settings import resolve_settings

    return [(j.id, j.state) for j in open_job_store(resolve_settings()).list()]


def test_validate_names_every_metric_with_its_mode(tmp_path: Path, automl_home: Path) -> None:
    job = _iris_spec(tmp_path, metric=["val_accuracy", "n_params"], mode=["max", "min"], sampler={"name": "nsga2"})
    result = CliRunner().invoke(app, ["validate", str(job)])
    assert result.exit_code == 0, result.output
    assert "max val_accuracy, min n_params" in _one_line(result.output)


@pytest.mark.parametrize("command", ["status", "cancel", "best"])
@pytest.mark.parametrize("prefix", ["", "a", "abc"])
def test_a_job_id_prefix_too_short_to_name_one_job_is_refused(command: str, prefix: str, automl_home: Path) -> None:
    """An empty prefix matches every id: ``cancel ""`` cancelled the only job in the store."""
    job_id = _queued_job()
    result = CliRunner().invoke(app, [command, prefix])
    assert result.exit_code == EXIT_INVALID, result.output
    output = _one_line(result.output)
    assert "at least 4 characters" in output and "12 hex digits" in output, output
    assert _jobs() == [(job_id, "queued")], "nothing was cancelled"


@pytest.mark.parametrize("command", ["status", "cancel", "best"])
@pytest.mark.parametrize("text", ["a" * 100_000, "3cb2283bb2eb0", "zzzz", "3cb%", "3c_2"])
def test_what_cannot_be_a_job_id_is_refused_saying_what_one_looks_like(command: str, text: str, automl_home: Path) -> None:
    """A 100,000-character id made SQLite give up on the LIKE pattern, reported as a database outage."""
    job_id = _queued_job()
    result = CliRunner().invoke(app, [command, text])
    assert result.exit_code == EXIT_INVALID, result.output
    output = _one_line(result.output)
    assert "is not a job id" in output and "12 hex digits" in output and "unavailable" not in output, output[:500]
    assert len(output) < 300, "the input is not echoed whole"
    assert _jobs() == [(job_id, "queued")]


def test_a_job_id_prefix_of_four_or_more_still_names_the_job(automl_home: Path) -> None:
    job_id = _queued_job()
    for given in (job_id, job_id[:4], job_id[:6].upper()):
        shown = CliRunner().invoke(app, ["status", given, "--json"])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["job"]["id"] == job_id


def test_warm_start_from_job_is_checked_like_a_job_id(tmp_path: Path, automl_home: Path) -> None:
    _queued_job()
    job = _iris_spec(tmp_path, warm_start={"from_job": "ab"})
    result = CliRunner().invoke(app, ["submit", str(job)])
    assert result.exit_code == EXIT_INVALID, result.output
    assert "warm_start.from_job" in result.output and "at least 4 characters" in _one_line(result.output)
    assert len(_jobs()) == 1, "nothing queued"


@pytest.mark.parametrize("command", [["submit"], ["run", "--no-progress"]])
def test_a_spec_whose_own_tracking_server_is_down_is_refused_before_it_is_queued(
    command: list[str], tmp_path: Path, automl_home: Path
) -> None:
    """docs/service.md: "the MLflow server is down at submit: refused up front with one clear line"."""
    job = _iris_spec(tmp_path, tracking={"tracking_uri": "http://127.0.0.1:1"})
    result = CliRunner().invoke(app, [command[0], str(job), *command[1:]])
    assert result.exit_code == EXIT_FAILED, result.output
    output = _one_line(result.output)
    assert "cannot reach the MLflow tracking server at http://127.0.0.1:1" in output and "tracking.tracking_uri" in output, output
    assert "Traceback" not in result.output
    assert not (automl_home / "jobs.db").exists() or _jobs() == [], "nothing queued"


def test_a_job_that_fails_in_its_runner_is_reported_once(tmp_path: Path, automl_home: Path, ray_session: None) -> None:
    """``automl run`` prints the failed job's reason once (the job row's, as it exits), not also as the runner's log line."""
    import ray

    env = {**os.environ, "AUTOML_HOME": str(automl_home), "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "COLUMNS": "400"}
    storage = "postgresql://bob:hunter2@127.0.0.1:1/studies"  # queued fine; the study storage fails in the runner
    result = subprocess.run(
        [sys.executable, "-m", "automl.cli", "run", EXAMPLE, "--no-progress", "--storage-url", storage],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == EXIT_FAILED, result.stderr[-2000:]
    assert result.stderr.count("cannot open the Optuna storage") == 1, result.stderr[-3000:]
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
