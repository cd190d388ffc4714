"""Faults inside a trial: it raises (once, or every time), returns infinity, or hangs.

Each job runs through the real job store and runner (in this process, on the shared Ray), so
what a user sees afterwards (the study, the MLflow runs, the job's events) is what is checked.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from faultkit import assert_records_agree, job_spec, objective_module, run_queue, settings_for, submit
from mlflow import MlflowClient

# Each state directory starts with its MLflow store made (``tracked_home``): these tests are about the trials.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("tracked_home")]
# The jobs here draw no end-of-job plots: seconds of CPU each, taken from the tests that run next,
# and not what these tests check (tests/automl/tracking/test_plots.py does).
NO_PLOTS = {"plots": False}

# Behaviour by trial number, so the test knows what each trial did. Every attempt leaves a
# file in ATTEMPTS (the worker shares this machine's disk): the count of attempts is real.
RETRIES = """
import math, os, time, uuid

def objective(params, ctx):
    n = ctx.trial_number
    os.makedirs(ATTEMPTS, exist_ok=True)
    open(os.path.join(ATTEMPTS, f"{n}-{uuid.uuid4().hex}"), "w").close()
    attempts = sum(1 for f in os.listdir(ATTEMPTS) if f.startswith(f"{n}-"))
    if n == 0 and attempts == 1:
        raise RuntimeError("flaky: first attempt fails")
    if n == 1:
        raise RuntimeError(f"broken: attempt {attempts} fails too")
    if n == 2:
        return -math.inf          # would be the best loss of all, if it were accepted
    return 1.0 + params["x"]
"""


def attempts(folder: Path, number: int) -> int:
    return sum(1 for f in folder.iterdir() if f.name.startswith(f"{number}-"))


def test_raising_and_infinite_trials_retried_to_the_limit_and_never_best(
    automl_home: Path, ray_session: None, tmp_path: Path
) -> None:
    folder = tmp_path / "attempts"
    ref = objective_module(tmp_path, RETRIES, ATTEMPTS=str(folder))
    settings = settings_for(automl_home)
    job_id = submit(settings, job_spec("retries", ref, trials=4, max_retries=2, tracking=NO_PLOTS), tmp_path)
    run_queue(settings)

    records = assert_records_agree(settings, job_id, trials=4)
    assert records.job.state == "succeeded", records.job.error
    states = {t.number: t.state.name for t in records.trials}
    assert states == {0: "COMPLETE", 1: "FAIL", 2: "FAIL", 3: "COMPLETE"}, states
    # Flaky: failed once, retried once, COMPLETE, in one Optuna trial and one MLflow run.
    assert attempts(folder, 0) == 2
    assert records.runs[0].data.tags["automl.retries"] == "1"
    assert "flaky" in records.runs[0].data.tags["automl.retry_reason"]
    # Broken: max_retries + 1 attempts, then FAIL with its error in MLflow and the events.
    assert attempts(folder, 1) == 3
    broken = records.runs[1]
    assert "RuntimeError: broken: attempt 3 fails too" in broken.data.tags["automl.fail_reason"]
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    assert "error.txt" in [a.path for a in client.list_artifacts(broken.info.run_id)]
    # -inf is recorded as a failure (not retried: it did not raise), and is never the best.
    assert attempts(folder, 2) == 1
    assert "is -inf" in records.runs[2].data.tags["automl.fail_reason"]
    assert records.trial(2).values is None
    messages = [e.message for e in records.events]
    assert any(m.startswith("trial 0 failed on attempt 1") and "flaky" in m for m in messages), messages
    assert sum(m.startswith("trial 1 failed on attempt") for m in messages) == 2, messages
    assert any(m.startswith("trial 1 failed: ") and "broken: attempt 3" in m for m in messages), messages
    assert any(m.startswith("trial 2 failed: ") and "is -inf" in m for m in messages), messages
    best = min((t for t in records.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    parent = client.get_run(records.job.mlflow_run_id)
    assert parent.data.tags["automl.best_trial"] == str(best.number)
    assert math.isfinite(parent.data.metrics["best_loss"]) and parent.data.metrics["best_loss"] == pytest.approx(best.value)


HANGS = """
import time

def objective(params, ctx):
    if ctx.trial_number == 1:
        ctx.report(loss=5.0, step=1)
        time.sleep(3600)          # hangs after its first report: no stopper ever hears from it
    return params["x"]
"""


def test_a_hung_trial_is_stopped_by_the_trial_time_limit_and_the_job_goes_on(
    automl_home: Path, ray_session: None, tmp_path: Path
) -> None:
    ref = objective_module(tmp_path, HANGS)
    settings = settings_for(automl_home)
    spec = job_spec("hangs", ref, trials=3, budget={"max_epochs": 2, "trial_timeout_s": 10}, tracking=NO_PLOTS)
    job_id = submit(settings, spec, tmp_path)
    run_queue(settings)

    records = assert_records_agree(settings, job_id, trials=3)
    assert records.job.state == "succeeded", records.job.error
    assert [t.state.name for t in records.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    reason = "timed out after 10 s (budget.trial_timeout_s)"
    assert records.trial(1).user_attrs["fail_reason"] == reason
    assert records.runs[1].data.tags["automl.fail_reason"] == reason
    assert f"trial 1 failed: {reason}" in [e.message for e in records.events]


# What an objective may do wrong besides raising an ordinary error, by trial number. Trial 5
# returns a NumPy scalar: a number, so it counts.
MISBEHAVES = """
import numpy as np

def objective(params, ctx):
    n = ctx.trial_number
    if n == 0:
        return "0.5"              # float() would take it; a string is not a metric
    if n == 1:
        return True               # nor is a bool
    if n == 2:
        raise KeyboardInterrupt("the objective gave up")
    if n == 3:
        raise SystemExit(0)       # Tune's own way of stopping a trial quietly
    if n == 4:
        raise StopIteration("out of batches")
    return np.float32(0.25)
"""


def test_non_numbers_and_stop_like_exceptions_fail_the_trial_with_their_own_reason(
    automl_home: Path, ray_session: None, tmp_path: Path
) -> None:
    ref = objective_module(tmp_path, MISBEHAVES)
    settings = settings_for(automl_home)
    job_id = submit(settings, job_spec("misbehaves", ref, trials=6, tracking=NO_PLOTS), tmp_path)
    run_queue(settings)

    records = assert_records_agree(settings, job_id, trials=6)
    assert records.job.state == "succeeded", records.job.error
    states = {t.number: t.state.name for t in records.trials}
    assert states == {0: "FAIL", 1: "FAIL", 2: "FAIL", 3: "FAIL", 4: "FAIL", 5: "COMPLETE"}, states
    expected = {
        0: "'loss' is not a number: '0.5'",
        1: "'loss' is not a number: True",
        2: "KeyboardInterrupt: the objective gave up",
        3: "SystemExit: 0",
        4: "StopIteration: out of batches",
    }
    messages = [e.message for e in records.events]
    for number, reason in expected.items():
        assert reason in records.trial(number).user_attrs["fail_reason"], (number, records.trial(number).user_attrs)
        assert reason in records.runs[number].data.tags["automl.fail_reason"], number
        assert any(m.startswith(f"trial {number} failed: ") and reason in m for m in messages), (number, messages)
    assert "cancel" not in records.trial(2).user_attrs["fail_reason"].lower()
    assert records.trial(5).value == pytest.approx(0.25)


def test_a_built_in_trainer_whose_loss_goes_nan_fails_that_trial_and_the_job_goes_on(
    automl_home: Path, ray_session: None, tmp_path: Path
) -> None:
    # SGD at a learning rate of 1000 turns iris's training loss into NaN in the first epoch; the
    # model then guesses one class, whose accuracy (1/3) used to be recorded as a COMPLETE result.
    lr = {"type": "float", "low": 1e-3, "high": 1e3, "log": True}
    spec = {
        "name": "diverges",
        "trainer": {"name": "mlp", "dataset": "iris"},
        "space": {"learning_rate": lr, "optimizer": {"type": "categorical", "choices": ["sgd"]}},
        "sampler": {"name": "random"},
        "scheduler": {"name": "fifo"},
        "budget": {"trials": 2, "max_epochs": 2},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
        "warm_start": {"configs": [{"learning_rate": 1e3, "optimizer": "sgd"}, {"learning_rate": 0.05, "optimizer": "sgd"}]},
        "seed": 5,
        "tracking": NO_PLOTS,
    }
    settings = settings_for(automl_home)
    job_id = submit(settings, spec, tmp_path)
    run_queue(settings)

    from automl.service import study_trials

    records = assert_records_agree(settings, job_id, trials=2)
    assert records.job.state == "succeeded", records.job.error
    assert [t.state.name for t in records.trials] == ["FAIL", "COMPLETE"]
    reason = records.trial(0).user_attrs["fail_reason"]
    assert re.match(r"training loss became (nan|inf|-inf) at epoch 1; lower the learning rate", reason), reason
    assert records.runs[0].data.tags["automl.fail_reason"] == reason
    assert f"trial 0 failed: {reason}" in [e.message for e in records.events]
    summary = {t.number: t for t in study_trials(settings, records.job.study_name)}
    assert summary[0].state == "FAIL" and summary[0].fail_reason == reason
    assert summary[0].value is None
    # Not retried, nothing reported past the divergence, and the best is the trial that trained.
    assert "automl.retries" not in records.runs[0].data.tags
    assert "val_accuracy" not in records.runs[0].data.metrics
    parent = MlflowClient(tracking_uri=settings.tracking_uri).get_run(records.job.mlflow_run_id)
    assert parent.data.tags["automl.best_trial"] == "1"
