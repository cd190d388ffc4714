"""The driver's ledger of one search: a record per trial, the best value so far, the trials
stopped by the per-trial time limit, and the tracking writes that failed.

Tune's callbacks write it while trials run; settling, early stopping, the summary and PBT's
run tags read it. It imports nothing of Ray, Optuna or MLflow, so it is tested on its own.

What must stay true: a trial is counted finished once, however many times its end is
reported; the best value comes from COMPLETE trials only; a failed tracking write is kept
(and logged) and never raised into the search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from automl.states import FINISHED_TRIAL_STATES, TrialState

if TYPE_CHECKING:
    from automl.engine.study_search import TrialOutcome

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class TrialRecord:
    """What the driver learned about one trial while it ran."""

    number: int
    ray_trial_id: str
    params: dict[str, Any]
    run_ref: Future[str | None] | str | None = None
    outcome: TrialOutcome | None = None
    # The trial's last checkpoint (a ``ray.tune.Checkpoint``: a path and the filesystem it is on,
    # a bucket's or the local one); read it with ``checkpoint.as_directory()``, never by path.
    checkpoint: Any = None
    last_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        """The trial's MLflow run id (waits for the writer to have created the run)."""
        if isinstance(self.run_ref, Future):
            return self.run_ref.result()
        return self.run_ref


class TrialLedger:
    """Every trial of one search as the driver saw it, and the running figures derived from them.

    ``finished`` and ``best_value`` start from what a resumed job had already finished, so the
    progress bar, the target and the patience count the whole job, not only this runner's part.
    """

    def __init__(
        self,
        metric: str,
        mode: str,
        *,
        finished: int = 0,
        best_value: float | None = None,
        target: float | None = None,
        patience: int | None = None,
    ) -> None:
        self.metric = metric
        self.mode = mode
        self.records: dict[str, TrialRecord] = {}
        self.finished = finished
        self.best_value = best_value
        self.target = target
        self.patience = patience
        self.since_best = 0
        self.tracking_errors: list[str] = []
        # Ray trial id -> why the trial's last attempt was stopped by the per-trial time limit.
        self.timed_out: dict[str, str] = {}

    def open(self, trial_id: str, number: int, params: dict[str, Any]) -> TrialRecord:
        """Start the record of trial ``trial_id`` (Optuna's trial ``number``)."""
        record = TrialRecord(number, trial_id, dict(params))
        self.records[trial_id] = record
        return record

    def get(self, trial_id: str) -> TrialRecord | None:
        return self.records.get(trial_id)

    def by_number(self) -> dict[int, TrialRecord]:
        """The records by Optuna trial number."""
        return {record.number: record for record in self.records.values()}

    def end(self, record: TrialRecord, outcome: TrialOutcome) -> bool:
        """Record that a trial ended with ``outcome``; ``False`` (and nothing counted) when it had ended already."""
        if record.outcome is not None and record.outcome.state in FINISHED_TRIAL_STATES:
            return False
        record.outcome = outcome
        self.finished += 1
        if outcome.state == TrialState.COMPLETE and outcome.value is not None and self.improves(outcome.value):
            self.best_value = outcome.value
            self.since_best = 0
        else:
            self.since_best += 1
        return True

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far (any value does when there is none)."""
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def early_stop_reason(self) -> str | None:
        """Why the job should stop before its trial budget is spent (target reached, patience out), if it should."""
        if self.target is not None and self.best_value is not None:
            reached = self.best_value >= self.target if self.mode == "max" else self.best_value <= self.target
            if reached:
                return f"the target {self.metric} {self.target:g} was reached ({self.best_value:.6g})"
        if self.patience is not None and self.since_best >= self.patience:
            return f"no new best {self.metric} in the last {self.since_best} trials"
        return None

    def time_out(self, trial_id: str, reason: str) -> None:
        """Note that the per-trial time limit stopped the running attempt of ``trial_id``."""
        self.timed_out[trial_id] = reason

    def timeout_reason(self, trial_id: str, *, clear: bool = False) -> str | None:
        """Why ``trial_id``'s attempt was timed out, if it was; ``clear`` forgets it (the trial is retried)."""
        return self.timed_out.pop(trial_id, None) if clear else self.timed_out.get(trial_id)

    def tracking_failed(self, message: str) -> None:
        """Keep a failed tracking write's message for the result (and log it once)."""
        logger.warning("MLflow tracking failed: %s", message)
        self.tracking_errors.append(message)

    def safely(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``call(*args, **kwargs)``, or ``None`` when it raised: the error is kept as a tracking error."""
        try:
            return call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never take the search down
            self.tracking_failed(f"{getattr(call, '__name__', 'tracking')}: {type(exc).__name__}: {exc}")
            return None
