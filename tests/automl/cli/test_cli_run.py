"""`automl run` end to end on bundled data: a real search that really trains, tracked and registered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import torch
import yaml
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from automl.cli import app

pytestmark = pytest.mark.slow
HYPERPARAMETERS = {"learning_rate", "batch_size", "dropout", "l1", "l2"}
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}  # automl.states.mlflow_status


def test_cli_run_searches_tracks_and_registers(tmp_path: Path, automl_home: Path, ray_session: None) -> None:
    job = tmp_path / "iris.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "name": "iris-e2e",
                "trainer": {"name": "mlp", "dataset": "iris"},
                "space": "mlp-small",
                "metric": "val_accuracy",
                "mode": "max",
                "scheduler": {"name": "asha", "grace_period": 1},
                "budget": {"trials": 6, "max_epochs": 6},
                "seed": 3,
            }
        )
    )
    result = CliRunner().invoke(app, ["run", str(job), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Top trials of iris-e2e" in result.output and "Model: models:/iris-e2e/1" in result.output

    # The Optuna study is the full record: every trial, each in a final state.
    storage = f"sqlite:///{automl_home / 'studies.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trials = study.get_trials()
    assert len(trials) == 6
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert any(t.state.name == "COMPLETE" for t in trials)
    for t in trials:
        assert t.intermediate_values, "every epoch's metric reaches Optuna"

    # MLflow: one parent run, one child per trial, with hyperparameters and per-epoch metrics.
    uri = f"sqlite:///{automl_home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("iris-e2e")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("automl.kind") == "job"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert "best_val_accuracy" in parent.data.metrics
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 6
    by_number = {int(r.data.tags["automl.trial_number"]): r for r in children}
    for t in trials:
        run = by_number[t.number]
        assert set(run.data.params) >= HYPERPARAMETERS
        assert float(run.data.params["learning_rate"]) == pytest.approx(t.params["learning_rate"])
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == sorted(t.intermediate_values)
        assert run.info.status == RUN_STATUS[t.state.name]
        assert run.data.tags["automl.state"] == t.state.name

    # The best trial's model is registered, loads, and predicts far better than chance (1/3).
    best_run = by_number[study.best_trial.number]
    (version,) = client.search_model_versions("name='iris-e2e'")
    assert version.run_id == best_run.info.run_id
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pytorch.load_model(f"models:/iris-e2e/{version.version}")
    x, y = load_iris(return_X_y=True)
    with torch.no_grad():
        predicted = model(torch.tensor(x, dtype=torch.float32)).argmax(dim=1).numpy()
    assert np.mean(predicted == y) > 0.7
    # The model carries what a user needs to read its outputs.
    metadata = mlflow.models.get_model_info(f"models:/iris-e2e/{version.version}").metadata
    assert metadata["class_names"] == ["setosa", "versicolor", "virginica"]
    assert metadata["input_shape"] == [4]


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from automl.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "for name in ('run', 'validate', 'spaces', 'ui'):\n"
        "    assert CliRunner().invoke(app, [name, '--help']).exit_code == 0\n"
        "heavy = [m for m in ('ray', 'torch', 'mlflow', 'optuna') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
