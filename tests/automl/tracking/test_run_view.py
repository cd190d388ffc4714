"""What MLflow's run view is told about a real search: trial runs named uniquely per job, spanning
the trials' own times; the experiment set to show the job's metric first."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

import automl
from automl.tracking.views import PRIMARY_METRIC_TAG, VIEW_TAG_PREFIX, view_state
from workers.context import TrialContext

pytestmark = pytest.mark.slow
STEP_S = 0.4


def slow_bowl(params: dict, ctx: TrialContext) -> None:
    for step in range(1, ctx.max_epochs + 1):
        time.sleep(STEP_S)
        ctx.report(loss=(params["x"] - 1) ** 2 + 1 / step, step=step)


def test_trial_runs_carry_their_trials_times_and_unique_names(automl_home: Path, ray_session: None) -> None:
    space = {"x": {"type": "float", "low": -2, "high": 2}}
    results = [
        automl.search(
            slow_bowl, space, n_trials=2, max_steps=2, metric="loss", mode="min", name="timed", scheduler="fifo", seed=seed
        )
        for seed in (1, 2)
    ]
    client = MlflowClient(tracking_uri=results[0].tracking_uri)
    names: list[str] = []
    for result in results:
        parent = client.get_run(result.parent_run_id)
        job_id = parent.info.run_name.rsplit("-", 1)[1]
        for trial in result.trials:
            run = client.get_run(result.run_ids[trial.number]).info
            names.append(run.run_name)
            assert run.run_name == f"trial-{trial.number:03d}-{job_id}"
            # The run spans the trial as Tune ran it (two steps of STEP_S, after its actor started),
            # not the few milliseconds of its tracking writes; the result's own times agree.
            assert run.end_time - run.start_time >= 2 * STEP_S * 1000
            assert trial.started_at is not None and trial.finished_at is not None
            assert abs(run.start_time / 1000 - trial.started_at.timestamp()) < 1.0
            assert abs(run.end_time / 1000 - trial.finished_at.timestamp()) < 1.0
    # Flattened (sorted by a metric), the trials of the two jobs are told apart by name.
    assert len(set(names)) == len(names) == 4

    # The experiment names its metric, and offers a saved view of its runs sorted by it (lowest
    # loss first) with it as a column, linked from its description; one view, however many jobs.
    experiment = client.get_experiment_by_name("timed")
    assert experiment.tags[PRIMARY_METRIC_TAG] == "loss"
    views = {k: v for k, v in experiment.tags.items() if k.startswith(VIEW_TAG_PREFIX)}
    assert list(views) == [f"{VIEW_TAG_PREFIX}automl-loss"]
    envelope = json.loads(views[f"{VIEW_TAG_PREFIX}automl-loss"])
    assert envelope["name"] == "Trials by loss" and json.loads(envelope["state"]) == view_state("loss", "min", ["x"])
    assert json.loads(envelope["state"])["orderByAsc"] is True
    note = experiment.tags["mlflow.note.content"]
    assert f"(#/experiments/{experiment.experiment_id}/runs?viewStateShareKey=automl-loss&workflowType=machine_learning)" in note
