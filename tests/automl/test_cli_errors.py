"""Unreachable services: each command says which one, hides passwords, exits 1, queues nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from automl.cli import EXIT_FAILED, app

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "iris.yaml")


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", [["list"], ["status", "abc"], ["cancel", "abc"], ["best", "abc"], ["submit", EXAMPLE]])
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
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == EXIT_FAILED
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in _one_line(result.stderr)
    assert not automl_home.exists()


def test_unreachable_tracking_server(automl_home: Path, ray_session: None) -> None:
    result = CliRunner().invoke(app, ["run", EXAMPLE, "--tracking-uri", "http://bob:hunter2@127.0.0.1:1", "--no-progress"])
    assert result.exit_code == EXIT_FAILED
    assert "cannot reach the MLflow tracking server at http://bob:***@127.0.0.1:1" in _one_line(result.output)
    assert "hunter2" not in result.output


def test_json_stdout_holds_the_document_alone_even_when_something_prints_after_the_job() -> None:
    """Ray's threads print notices ("node ... marked dead") on the driver's stdout, sometimes after
    the job has ended; with --json, descriptor 1 stays on stderr and the JSON goes to the real stdout."""
    script = (
        "import os, sys\n"
        "from automl.cli import _stdout_to_stderr\n"
        "with _stdout_to_stderr(True) as real:\n"
        "    print('during the job')\n"
        "    os.write(1, b'(raylet) notice during\\n')\n"
        "    real.write('{\"job\": 1}\\n')\n"
        "os.write(1, b'(raylet) notice after\\n')\n"
        "print('printed after')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == '{"job": 1}\n'
    assert "notice during" in done.stderr and "notice after" in done.stderr and "printed after" in done.stderr
