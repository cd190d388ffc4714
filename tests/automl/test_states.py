"""The state vocabularies: their values are stored strings, and the mappings between them are whole."""

from __future__ import annotations

import json

import optuna
import pytest
from mlflow.entities import RunStatus

from automl.states import (
    FINAL_JOB_STATES,
    FINISHED_TRIAL_STATES,
    JobState,
    MlflowStatus,
    StopReason,
    TrialState,
    from_optuna,
    mlflow_status,
    to_optuna,
)

# Every member's value, as job rows, snapshots, MLflow tags and the CLI's JSON hold it. A rename
# or a new member fails here: a value once written must never change.
STORED = {
    TrialState: {"RUNNING": "RUNNING", "COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "FAIL", "WAITING": "WAITING"},
    JobState: {"QUEUED": "queued", "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed", "CANCELLED": "cancelled"},
    StopReason: {"CANCEL": "cancel", "RELEASE": "release"},
    MlflowStatus: {
        "RUNNING": "RUNNING",
        "SCHEDULED": "SCHEDULED",
        "FINISHED": "FINISHED",
        "FAILED": "FAILED",
        "KILLED": "KILLED",
    },
}


@pytest.mark.parametrize("enum", list(STORED), ids=lambda e: e.__name__)
def test_values_are_the_stored_strings(enum) -> None:
    assert {m.name: m.value for m in enum} == STORED[enum]
    for member in enum:
        # A member is its string wherever it goes: compared, formatted, as JSON.
        assert member == member.value and hash(member) == hash(member.value)
        assert f"{member}" == str(member) == member.value
        assert json.dumps({member: member}) == json.dumps({member.value: member.value})


def test_job_states_keep_their_order() -> None:
    # The CLI lists them in this order (`automl list --state` with an unknown state).
    assert list(JobState) == ["queued", "running", "succeeded", "failed", "cancelled"]


def test_final_job_states() -> None:
    assert {"succeeded", "failed", "cancelled"} == FINAL_JOB_STATES
    assert "queued" not in FINAL_JOB_STATES and "running" not in FINAL_JOB_STATES


@pytest.mark.parametrize("state", list(optuna.trial.TrialState), ids=lambda s: s.name)
def test_every_optuna_state_maps_both_ways(state: optuna.trial.TrialState) -> None:
    ours = from_optuna(state)
    assert ours == state.name
    assert to_optuna(ours) is state
    assert to_optuna(ours.value) is state  # a stored string maps too
    assert (ours in FINISHED_TRIAL_STATES) == state.is_finished()


def test_every_trial_state_is_optunas() -> None:
    assert {s.value for s in TrialState} == set(optuna.trial.TrialState.__members__)


def test_every_trial_state_has_an_mlflow_status() -> None:
    assert {s: mlflow_status(s) for s in TrialState} == {
        "RUNNING": "RUNNING",
        "WAITING": "SCHEDULED",
        "COMPLETE": "FINISHED",
        "PRUNED": "FINISHED",  # not KILLED: the MLflow UI draws that as a failure; the tag says PRUNED
        "FAIL": "FAILED",
    }
    assert mlflow_status("PRUNED") is MlflowStatus.FINISHED  # from a stored string too


def test_mlflow_statuses_are_mlflows() -> None:
    assert {s.value for s in MlflowStatus} == {RunStatus.to_string(s) for s in RunStatus.all_status()}


def test_unknown_states_are_refused() -> None:
    with pytest.raises(ValueError):
        mlflow_status("DONE")
    with pytest.raises(ValueError):
        to_optuna("complete")
