"""``automl best`` is as quick as ``status`` for a finished job: it reads the job row, and loads
neither MLflow nor PyTorch, whatever the tracking server is doing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from automl.results import TrialSummary
from automl.service import open_job_store
from automl.settings import resolve_settings
from automl.store.snapshot import JobSnapshot

PROBE = """
import json, sys
from typer.testing import CliRunner
from automl.cli import app
result = CliRunner().invoke(app, ["best", sys.argv[1], "--json"])
print(json.dumps({"exit": result.exit_code, "out": result.stdout,
                  "loaded": sorted(m for m in ("mlflow", "torch", "ray", "optuna") if m in sys.modules)}))
"""


def test_best_of_a_finished_job_reads_its_row_and_loads_no_heavy_library(automl_home: Path) -> None:
    store = open_job_store(resolve_settings())
    spec = {
        "name": "quick",
        "metric": "val_accuracy",
        "mode": "max",
        "trainer": {"name": "mlp", "dataset": "iris"},
        "space": "mlp-small",
    }
    job = store.submit(name="quick", spec_yaml=yaml.safe_dump(spec), trials_total=2)
    store.claim("r", lease_s=30)
    # A tracking server that is not there: best must not need it for a job that has ended.
    store.record_tracking(job.id, "r", experiment_id="1", run_id="f" * 32)
    best = TrialSummary(number=1, state="COMPLETE", value=0.97, params={"lr": 0.01}, run_id="a" * 32)
    snapshot = JobSnapshot.of_trials([best], ["max"])
    store.record_snapshot(
        job.id,
        "r",
        JobSnapshot(**{**snapshot.__dict__, "model_uri": "models:/quick/3", "best_run_id": "a" * 32, "concluded": True}),
    )
    store.finish(job.id, "r", "succeeded", message="done")

    probe = subprocess.run(
        [sys.executable, "-c", PROBE, job.id],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["exit"] == 0 and seen["loaded"] == [], seen
    found = json.loads(seen["out"])
    assert (found["best_value"], found["best_trial"], found["model_uri"], found["best_run_id"]) == (
        0.97,
        1,
        "models:/quick/3",
        "a" * 32,
    )
    assert found["metric"] == "val_accuracy" and found["mode"] == "max"
