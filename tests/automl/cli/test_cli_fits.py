"""The command line as a shell user expects it: ``--version``, completion, JSON errors under
``--json`` with the same exit codes, and tables that stay readable at 80 columns and in a pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from automl.results import TrialSummary
from automl.service import open_job_store
from automl.settings import resolve_settings
from automl.store.snapshot import JobSnapshot


def automl(*args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, its stdout a pipe (as in a script); ``columns``: the terminal width it is told."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "automl.cli", *args], capture_output=True, text=True, timeout=60, env=env)


def test_version_names_the_package_and_the_libraries_it_runs_on() -> None:
    shown = automl("--version")
    assert shown.returncode == 0
    assert shown.stdout.startswith("automl 0.") and all(f"{lib} " in shown.stdout for lib in ("optuna", "ray", "mlflow", "torch"))


def test_shell_completion_can_be_shown_and_installed() -> None:
    command = Path(sys.executable).with_name("automl")  # the console script a user runs
    script = subprocess.run([str(command), "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert (
        script.returncode == 0
        and "_AUTOML_COMPLETE=complete_bash" in script.stdout
        and "complete -o default -F _automl_completion automl" in script.stdout
    )
    assert "--install-completion" in automl("--help").stdout


@pytest.mark.parametrize(
    ("args", "code", "kind", "words"),
    [
        (["status", "zz", "--json"], 2, "InvalidJobId", "is not a job id"),
        (["best", "abcdef", "--json"], 1, "JobNotFound", "no job with id"),
        (["list", "--state", "nope", "--json"], 2, "SpecError", "unknown state"),
        (["submit", "{spec}", "--json"], 2, "SpecError", "budget.trials"),
    ],
)
def test_with_json_an_error_is_a_json_object_on_stdout_with_the_same_exit_code(
    automl_home: Path, tmp_path: Path, args: list[str], code: int, kind: str, words: str
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"name": "bad", "trainer": {"name": "mlp", "dataset": "iris"}, "space": "mlp-small", "budget": {"trials": 0}}
        )
    )
    done = automl(*[a.replace("{spec}", str(spec)) for a in args])
    assert done.returncode == code, done.stderr
    error = json.loads(done.stdout)
    assert error["kind"] == kind and error["exit_code"] == code and words in error["error"]
    assert words in done.stderr, "people still read the one line on stderr"
    without = automl(*[a.replace("{spec}", str(spec)) for a in args if a != "--json"])
    assert without.returncode == code and without.stdout == "", "without --json, stdout stays empty on an error"


@pytest.fixture
def finished_job(automl_home: Path) -> str:
    store = open_job_store(resolve_settings())
    spec = {
        "name": "wide-params",
        "metric": "val_accuracy",
        "mode": "max",
        "trainer": {"name": "mlp", "dataset": "iris"},
        "space": "mlp-small",
    }
    job = store.submit(name="wide-params", spec_yaml=yaml.safe_dump(spec), trials_total=3)
    store.claim("host:123:abcdef", lease_s=30)
    params = {
        "learning_rate": 0.000126,
        "batch_size": 16,
        "dropout": 0.0222,
        "l1": 0.000817,
        "l2": 1.43e-05,
        "weight_decay_x": 3.3e-7,
    }
    trials = [TrialSummary(number=n, state="COMPLETE", value=0.9 + n / 100, params=params) for n in range(3)]
    store.record_snapshot(job.id, "host:123:abcdef", JobSnapshot.of_trials(trials, ["max"]))
    store.finish(job.id, "host:123:abcdef", "succeeded", message="done")
    return job.id


def test_tables_keep_every_value_whole_at_80_columns_and_in_a_pipe(finished_job: str) -> None:
    for shown in (automl("status", finished_job), automl("status", finished_job, columns=80), automl("list", columns=80)):
        assert shown.returncode == 0, shown.stderr
        assert "…" not in shown.stdout, shown.stdout
        assert all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout
    status = automl("status", finished_job).stdout
    for value in ("1.26e-04", "8.17e-04", "1.43e-05", "3.30e-07", "0.0222", "0.92"):
        assert value in status, value
    assert "learning_" in status and "rate" in status, "a long header breaks at its underscore"


def test_wide_lays_tables_out_in_full_whatever_the_width(finished_job: str) -> None:
    status = automl("status", finished_job, "--wide").stdout
    assert "learning_rate" in status and "weight_decay_x" in status
    listed = automl("list", "--wide", columns=80).stdout
    assert "runner" in listed and "host:123:abcdef" in listed and "…" not in listed
