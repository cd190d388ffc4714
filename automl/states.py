"""The states of trials and jobs, why a job stops, and the MLflow run statuses, in one place.

Each is a :class:`~enum.StrEnum`: a member *is* its string (``TrialState.COMPLETE == "COMPLETE"``),
so values read back from the job store, the Optuna storage or MLflow compare equal to members,
and members write out (JSON, SQL, MLflow tags, the CLI) as the bare string.

What must stay true: the values are stored (job rows, MLflow tags and run statuses, snapshots,
the JSON the CLI prints). Never rename or re-case a value; add a member instead. Trial states
are Optuna's ``TrialState`` names, and the mappings below are the only place that says how one
vocabulary turns into another. This module imports nothing of ours (a leaf: any module may use it),
and Optuna only when a mapping to it is asked for.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna


class TrialState(StrEnum):
    """A trial's state: Optuna's ``TrialState``, by name (the study, the MLflow tag ``automl.state``)."""

    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"
    WAITING = "WAITING"


class JobState(StrEnum):
    """A job's state in the job store (column ``state``; also the parent run's tag ``automl.state``)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StopReason(StrEnum):
    """Why a running search is told to stop (``JobControl.stop_reason``)."""

    CANCEL = "cancel"  # stop; unfinished trials fail
    RELEASE = "release"  # stop; unfinished trials stay RUNNING for the next runner to resume


class MlflowStatus(StrEnum):
    """MLflow's run statuses (``mlflow.entities.RunStatus`` names)."""

    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


# A job in one of these never changes again.
FINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
# A trial in one of these has ended (Optuna's ``TrialState.is_finished``).
FINISHED_TRIAL_STATES = frozenset({TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL})

# A pruned trial ended as the search meant it to (its scheduler stopped it early), so its run is
# FINISHED, as Ray Tune's own MLflow logger ends early-stopped trials: the MLflow UI draws KILLED
# and FAILED alike as a red cross. Its tag ``automl.state`` stays PRUNED, which tells it apart.
_MLFLOW_STATUS = {
    TrialState.RUNNING: MlflowStatus.RUNNING,
    TrialState.WAITING: MlflowStatus.SCHEDULED,
    TrialState.COMPLETE: MlflowStatus.FINISHED,
    TrialState.PRUNED: MlflowStatus.FINISHED,
    TrialState.FAIL: MlflowStatus.FAILED,
}


def mlflow_status(state: str) -> MlflowStatus:
    """The status of a trial's MLflow run while the trial is in ``state`` (a finished trial's run ends so).

    Raises:
        ValueError: ``state`` is no trial state.
    """
    return _MLFLOW_STATUS[TrialState(state)]


def from_optuna(state: optuna.trial.TrialState) -> TrialState:
    """Our name for an Optuna trial state."""
    return TrialState(state.name)


def to_optuna(state: str) -> optuna.trial.TrialState:
    """Optuna's trial state for one of ours.

    Raises:
        ValueError: ``state`` is no trial state.
    """
    import optuna

    return optuna.trial.TrialState[TrialState(state).name]
