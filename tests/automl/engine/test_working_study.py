"""The in-memory working copy of a job's study writes every change through to the durable study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from sqlalchemy import event

from automl.engine.working_study import StudyDiverged, WorkingStudy

SPACE = {
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    "batch_size": CategoricalDistribution([16, 32, 64]),
    "dropout": FloatDistribution(0.0, 0.5),
}


def _storage(tmp_path: Path) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'studies.db'}")


def _working(storage: optuna.storages.RDBStorage, seed: int = 0) -> WorkingStudy:
    return WorkingStudy(storage, "job", ["maximize"], optuna.samplers.TPESampler(seed=seed, n_startup_trials=3))


def _durable(storage: optuna.storages.RDBStorage) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="job", storage=storage).get_trials(deepcopy=False)


def test_every_change_reaches_the_durable_study_with_the_same_numbers(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    work = _working(storage)
    for i in range(6):
        trial = work.memory.ask(SPACE)
        work.started(trial, {"ray_trial_id": f"t{i}"})
        work.report(trial, 0.1 * i, 1)
        if i == 4:
            work.tell(trial, None, TrialState.PRUNED)
        elif i == 5:
            work.tell(trial, None, TrialState.FAIL, {"fail_reason": "boom"})
        else:
            work.tell(trial, 0.5 + i, TrialState.COMPLETE)

    durable, memory = _durable(storage), work.memory.get_trials(deepcopy=False)
    assert [t.number for t in durable] == [t.number for t in memory] == list(range(6))
    for d, m in zip(durable, memory, strict=True):
        assert (d.state, d.values, d.params, d.intermediate_values) == (m.state, m.values, m.params, m.intermediate_values)
        assert d.user_attrs["ray_trial_id"] == f"t{d.number}"
    assert durable[4].state == TrialState.PRUNED and durable[4].value == pytest.approx(0.4)  # its last report
    assert durable[5].user_attrs["fail_reason"] == "boom"


def test_a_new_working_copy_starts_from_what_was_written(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    first = _working(storage)
    done = first.memory.ask(SPACE)
    first.started(done, {})
    first.tell(done, 1.0, TrialState.COMPLETE)
    running = first.memory.ask(SPACE)
    first.started(running, {})  # the runner dies here: the trial stays RUNNING in the durable study

    second = _working(storage, seed=1)
    copied = second.memory.get_trials(deepcopy=False)
    assert [(t.number, t.state) for t in copied] == [(0, TrialState.COMPLETE), (1, TrialState.RUNNING)]
    resumed = second.trial(1)
    second.started(resumed, {"attempt": 2})
    second.tell(resumed, 2.0, TrialState.COMPLETE)
    fresh = second.memory.ask(SPACE)
    second.started(fresh, {})
    assert fresh.number == 2
    durable = _durable(storage)
    assert [(t.number, t.state) for t in durable] == [(0, TrialState.COMPLETE), (1, TrialState.COMPLETE), (2, TrialState.RUNNING)]
    assert durable[1].params == running.params and durable[1].user_attrs == {"attempt": 2}


def test_enqueued_configurations_are_durable_and_run_first(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    work = _working(storage)
    work.enqueue({"learning_rate": 0.01, "batch_size": 32, "dropout": 0.25})
    assert [t.state for t in _durable(storage)] == [TrialState.WAITING]

    trial = work.memory.ask(SPACE)
    work.started(trial, {"ray_trial_id": "t0"})
    (durable,) = _durable(storage)
    assert trial.params == {"learning_rate": 0.01, "batch_size": 32, "dropout": 0.25}
    assert durable.state == TrialState.RUNNING and durable.params == trial.params
    assert durable.user_attrs == {"ray_trial_id": "t0"}


def test_a_second_writer_is_detected(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    work = _working(storage)
    optuna.load_study(study_name="job", storage=storage).ask(SPACE)  # another process adds trial 0
    trial = work.memory.ask(SPACE)
    with pytest.raises(StudyDiverged, match="second runner"):
        work.started(trial, {})


def test_a_trial_costs_a_handful_of_write_transactions(tmp_path: Path) -> None:
    """One transaction to create a trial with its parameters, one per report, one to end it."""
    storage = _storage(tmp_path)
    work = _working(storage)
    commits: list[int] = []
    event.listen(storage.engine, "commit", lambda _conn: commits.append(1))
    for _ in range(5):
        trial = work.memory.ask(SPACE)
        work.started(trial, {"ray_trial_id": "x"})
        work.report(trial, 0.5, 1)
        work.tell(trial, 0.5, TrialState.COMPLETE)
    assert len(commits) <= 5 * 3 + 5  # at most 4 per trial, whatever the sampler reads
