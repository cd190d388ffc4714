"""Where the service writes is not writable or is full: the state directory, the artifact store,
the disk. Each time: a clear error naming the path, a non-zero exit, nothing half-written."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from faultkit import job_spec, objective_module, run_queue, service_env, settings_for, submit
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

OBJECTIVE = """
def objective(params):
    return params["x"]
"""


def cli(env: dict[str, str], cwd: Path, *args: str, fsize: int | None = None) -> subprocess.CompletedProcess:
    """Run the CLI; with ``fsize``, no file it writes may grow past that many bytes (a full disk)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "automl.cli", *args],
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=limit if fsize is not None else None,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    ref = objective_module(tmp_path, OBJECTIVE)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_spec("storage", ref, trials=2)))
    return path


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """``path`` as a read-only filesystem (a tmpfs mounted read-only, when this process may mount);
    else a folder whose parent is a regular file, which nobody, root included, can create."""
    path.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True, check=False
        ).returncode
        == 0
    )
    try:
        if mounted:
            yield path / "home"
        else:
            (path / "file").write_text("")
            yield path / "file" / "home"
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=False)


def test_state_directory_not_writable_is_refused_naming_it(tmp_path: Path, job_file: Path, automl_home: Path) -> None:
    with read_only_folder(tmp_path / "ro") as home:
        env = {**service_env(automl_home), "AUTOML_HOME": str(home)}
        for command in (("submit", str(job_file)), ("run", str(job_file), "--no-progress")):
            line = one_line_error(cli(env, tmp_path, *command))
            assert str(home) in line and "state directory" in line, line
            assert "AUTOML_HOME" in line, "the error says what to do"
        assert not home.exists()


def test_disk_full_at_submit_leaves_no_job_behind(tmp_path: Path, job_file: Path, automl_home: Path) -> None:
    env = service_env(automl_home)
    line = one_line_error(cli(env, tmp_path, "submit", str(job_file), fsize=16 * 1024))
    assert str(automl_home / "jobs.db") in line, line
    # With room again, the queue is empty (nothing half-submitted) and works.
    listed = cli(env, tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_artifact_store_not_writable_fails_the_job_cleanly(automl_home: Path, ray_session: None, tmp_path: Path) -> None:
    from automl.service import open_job_store

    settings = settings_for(automl_home)
    automl_home.mkdir(parents=True)
    (automl_home / "artifacts").write_text("not a folder")  # MLflow's local artifact root
    ref = objective_module(tmp_path, OBJECTIVE)
    job_id = submit(settings, job_spec("no-artifacts", ref, trials=2), tmp_path)
    run_queue(settings)

    job = open_job_store(settings).get(job_id)
    assert job.state == "failed", job.state
    assert str(automl_home / "artifacts") in (job.error or ""), job.error
    assert job.runner_id is not None and job.lease_expires_at is None, "no lease left to expire"
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status == "FAILED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
