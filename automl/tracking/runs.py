"""What a trial's MLflow run receives, and the seam through which it is written.

:class:`TrialRuns` is the Protocol of the four trial-run writes; :class:`~automl.tracking.mlflow_tracker.MlflowTracker`
makes them in the driver, and the job's writer process (``automl.engine.write_behind.RemoteTrialRuns``)
makes the same writes on another core. What must stay true: this module imports no MLflow
(the Tune callback and the writer use it on every trial), and tag names start with ``TAG_PREFIX``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from automl.states import FINISHED_TRIAL_STATES, MlflowStatus, mlflow_status

TAG_PREFIX = "automl."


@dataclass(frozen=True)
class RegisteredModel:
    """Where the best model went: its URI to load, and its Model Registry name and version."""

    model_uri: str
    registry_uri: str | None
    name: str | None
    version: str | None
    run_id: str


@dataclass
class RunUpdate:
    """Writes to one trial's run that MLflow takes in one ``log_batch`` (and an end).

    The tracking writer merges the updates of a run that queue up behind each other (params,
    a few reports, the final state), so a busy driver makes fewer, larger writes.
    """

    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, step, ms timestamp
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    error_text: str | None = None
    end_status: str | None = None
    # When the trial ended (ms since the epoch), not when the write is made: the run's end time.
    end_time: int | None = None

    @classmethod
    def report(cls, metrics: Mapping[str, float], step: int) -> RunUpdate:
        """One report's metrics at ``step``, stamped now."""
        now = int(time.time() * 1000)
        return cls(metrics=[(key, float(value), step, now) for key, value in metrics.items()])

    @classmethod
    def retry(cls, attempt: int, reason: str) -> RunUpdate:
        """Attempt ``attempt`` of the trial failed and Tune is retrying it."""
        return cls(tags={f"{TAG_PREFIX}retries": str(attempt), f"{TAG_PREFIX}retry_reason": reason[:4000]})

    @classmethod
    def end(
        cls, state: str, *, reason: str | None = None, error_text: str | None = None, end_time: int | None = None
    ) -> RunUpdate:
        """A trial's end with the state Optuna recorded for it, at ``end_time`` (ms; ``None``: when written)."""
        tags = {f"{TAG_PREFIX}state": state}
        if reason:
            tags[f"{TAG_PREFIX}fail_reason"] = reason[:4000]
        return cls(
            tags=tags,
            error_text=error_text,
            end_status=mlflow_status(state) if state in FINISHED_TRIAL_STATES else MlflowStatus.FAILED,
            end_time=end_time,
        )

    def merged(self, later: RunUpdate) -> RunUpdate:
        """This update followed by ``later`` as one: metrics of both, the later tag, text and end win."""
        return RunUpdate(
            metrics=[*self.metrics, *later.metrics],
            params={**self.params, **later.params},
            tags={**self.tags, **later.tags},
            error_text=later.error_text or self.error_text,
            end_status=later.end_status or self.end_status,
            end_time=later.end_time if later.end_status else self.end_time,
        )


@runtime_checkable
class TrialRuns(Protocol):
    """The seam for tracking a job's trial runs: the four writes the Tune callback makes per trial.

    :class:`MlflowTracker` makes them itself; ``automl.engine.write_behind.RemoteTrialRuns`` has the
    job's writer process make them. Each returns once the write is made (or raises its error).
    """

    def create_trial_run(self, number: int, tags: Mapping[str, str], start_time: int | None = None) -> str:
        """Open trial ``number``'s run (RUNNING) with ``tags``, started at ``start_time`` (ms; ``None``: now); its id."""
        ...

    def find_or_create_trial_run(self, number: int, tags: Mapping[str, str], start_time: int | None = None) -> str:
        """The run of trial ``number`` if one exists (a create whose answer was lost), else a new one."""
        ...

    def update_run(self, run_id: str, update: RunUpdate) -> None:
        """Apply one batch of writes (params, metrics, tags, an end) to a run."""
        ...

    def reopen_trial(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Mark a trial's run RUNNING again: the trial is retried after its runner stopped."""
        ...


def trial_run_name(number: int, job_id: str) -> str:
    """A trial's run name: its number, then its job's short id (``trial-011-6623790b``).

    The id keeps trial runs of different jobs apart where MLflow shows an experiment's runs
    flat (sorted by a metric, or filtered); the number keeps one job's trials in order.
    """
    return f"trial-{number:03d}-{job_id}" if job_id else f"trial-{number:03d}"


def job_short_id(run_name: str | None, run_id: str) -> str:
    """A job's short id, the hex its study and parent run are named with: the job store's id for a
    queued job (``iris-mlp-3c9a3581e1d7``), a random one for ``automl.search``; else its run id's start."""
    tail = (run_name or "").rsplit("-", 1)[-1]
    if 8 <= len(tail) <= 32 and all(c in "0123456789abcdef" for c in tail):
        return tail
    return run_id[:8]


def now_ms() -> int:
    """Now, as MLflow stamps times: milliseconds since the epoch."""
    return int(time.time() * 1000)


def trace_tail(text: str | None) -> str | None:
    """The last line of a traceback: the exception and its message."""
    if not text:
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else None


def read_text(path: str | None) -> str | None:
    """A small local file's text, or ``None`` when it is not there."""
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()
