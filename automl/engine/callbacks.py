"""Ray Tune callbacks that run in the driver: MLflow tracking and progress, per trial event.

Tune calls the searcher's ``on_trial_complete`` before these callbacks, so the outcome the
Optuna study recorded is already known here and MLflow is told the same. What the callbacks
learn goes into the search's :class:`~automl.engine.ledger.TrialLedger`; their writes go
through a :class:`~automl.tracking.writer.TrackingWriter`, so Tune's loop never waits
on a store.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any, Protocol

from ray.tune import Callback, Stopper
from ray.tune.result import AUTO_RESULT_KEYS

from automl.control import JobControl
from automl.engine.ledger import TrialLedger, TrialRecord
from automl.engine.study_search import INTERRUPTED, StudySearch, TrialOutcome, trial_outcome
from automl.faults import fault_point
from automl.results import TrialSummary
from automl.states import TrialState
from automl.tracking import MlflowTracker, RunUpdate, TrialRuns, read_text, trace_tail
from automl.tracking.runs import now_ms
from automl.tracking.writer import TrackingWriter
from workers.context import FINAL_KEY, STEP_KEY
from workers.trainable import TRIAL_NUMBER_KEY

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

GRACE_ENV = "AUTOML_TRACKING_GRACE_S"

_NOT_METRICS = set(AUTO_RESULT_KEYS) | {
    "done",
    "trial_id",
    "experiment_tag",
    "should_checkpoint",
    "time_since_restore",
    "iterations_since_restore",
    FINAL_KEY,
    STEP_KEY,
}


def user_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The metrics a trial reported, without the keys Tune and the trial context add."""
    return {
        key: float(value)
        for key, value in result.items()
        if key not in _NOT_METRICS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    }


class ProgressSink(Protocol):
    """Something that shows a job's progress (the CLI's progress bar)."""

    def start(self, total: int) -> None: ...

    def waiting(self, what: str | None) -> None:
        """Say what the job waits for before trials run (starting Ray, ...); ``None`` once they do."""
        ...

    def trial_done(self, state: str, best: float | None) -> None: ...

    def stop(self) -> None: ...


class JobCallback(Callback):
    """Follows every trial: opens and fills its MLflow run, keeps the ledger, drives the progress bar."""

    def __init__(
        self,
        searcher: StudySearch,
        ledger: TrialLedger,
        *,
        tracker: MlflowTracker | None = None,
        progress: ProgressSink | None = None,
        control: JobControl | None = None,
        existing_runs: dict[int, str] | None = None,
        tracking_retry_s: float = 5.0,
        tracking_grace_s: float | None = None,
        trial_runs: TrialRuns | None = None,
    ) -> None:
        self.searcher = searcher
        self.ledger = ledger
        # Who makes the trial-run writes: the tracker itself, or the job's writer process
        # (automl.engine.write_behind.RemoteTrialRuns, the same four methods).
        self.trial_runs: TrialRuns | None = trial_runs if trial_runs is not None else tracker
        # How long a finished search waits for a down MLflow server before giving its held writes up.
        self.tracking_grace_s = tracking_grace_s if tracking_grace_s is not None else float(os.environ.get(GRACE_ENV, "30"))
        self.tracker = tracker
        self.progress = progress
        self.control = control
        self.existing_runs = dict(existing_runs or {})
        self._trials: dict[str, Trial] = {}
        # Tune tells the searcher a trial failed before it calls us: let it read the error itself,
        # so the Optuna study records the trial's own error, as MLflow and the events do.
        searcher.error_reason = self.error_reason
        self.writer = TrackingWriter(
            ledger.tracking_failed, reachable=tracker.reachable if tracker is not None else None, retry_s=tracking_retry_s
        )

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; the MLflow client and the
        # progress bar hold locks and belong to this driver process only.
        return {
            **self.__dict__,
            "tracker": None,
            "trial_runs": None,
            "progress": None,
            "control": None,
            "writer": None,
            "_trials": {},
        }

    @property
    def tracking(self) -> bool:
        """Whether trial runs are written to MLflow in this search."""
        return self.tracker is not None and self.trial_runs is not None

    def error_reason(self, trial_id: str) -> str | None:
        """Why a trial failed, in one line: the per-trial time limit, or the tail of its error."""
        timed_out = self.ledger.timeout_reason(trial_id)
        if timed_out is not None:
            return timed_out
        trial = self._trials.get(trial_id)
        return trace_tail(read_text(trial.error_file)) if trial is not None else None

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.progress is not None:
            self.progress.waiting(None)
        self._trials[trial.trial_id] = trial
        if self.ledger.get(trial.trial_id) is not None:
            return  # a retry of a failed trial (FailureConfig): it keeps its run
        params = {k: v for k, v in trial.config.items() if k != TRIAL_NUMBER_KEY}
        number = trial.config.get(TRIAL_NUMBER_KEY)
        if number is None:
            number = self.searcher.trial_number(trial.trial_id) or 0
        record = self.ledger.open(trial.trial_id, int(number), params)
        runs = self.trial_runs
        if runs is None or not self.tracking:
            return
        if record.number in self.existing_runs:  # a trial retried after its runner stopped
            record.run_ref = self.existing_runs[record.number]
            self.writer.submit(runs.reopen_trial, record.run_ref, {"automl.ray_trial_id": trial.trial_id})
        else:
            # The run starts when the study says the trial did (Optuna's datetime_start, as in
            # trials_frame() and optuna-dashboard), however long its write waits in the queue.
            self._create_run(record, self.searcher.started_ms(trial.trial_id) or now_ms())

    def open_record(self, trial_id: str, number: int, params: dict[str, Any]) -> TrialRecord:
        """A record (and MLflow run) for a trial that Tune never started, so it is tracked too."""
        record = self.ledger.open(trial_id, number, params)
        if self.tracking:
            self._create_run(record, now_ms())
        return record

    def _create_run(self, record: TrialRecord, start_time: int) -> None:
        runs = self.trial_runs
        assert runs is not None
        record.run_ref = self.writer.submit(
            runs.create_trial_run,
            record.number,
            {"automl.ray_trial_id": record.ray_trial_id},
            start_time,
            replay=runs.find_or_create_trial_run,
        )
        self.update_run(record, RunUpdate(params=record.params))

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any) -> None:
        record = self.ledger.get(trial.trial_id)
        if record is None:
            return
        if result.get(FINAL_KEY):
            fault_point("trial_reported")
        metrics = user_metrics(result)
        record.last_metrics = metrics
        if metrics:
            step = int(result.get(STEP_KEY) or result.get("training_iteration") or 0)
            self.update_run(record, RunUpdate.report(metrics, step))

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # Tune restarts a trial that raised or whose process died (FailureConfig): same trial,
        # same Optuna trial and MLflow run; the failed attempt is an event and a tag.
        record = self.ledger.get(trial.trial_id)
        if record is None:
            return
        attempt = int(trial.run_metadata.num_failures)
        reason = (
            self.ledger.timeout_reason(trial.trial_id, clear=True)
            or trace_tail(read_text(trial.error_file))
            or "the trial failed"
        )
        self.update_run(record, RunUpdate.retry(attempt, reason))
        if self.control is not None:
            self.writer.submit_store(
                self.control.on_event, "trial_retried", f"trial {record.number} failed on attempt {attempt} ({reason}); retrying"
            )

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, error=True)

    def _finish(self, trial: Trial, *, error: bool) -> None:
        record = self.ledger.get(trial.trial_id)
        if record is None or record.outcome is not None:
            return
        error_text = read_text(trial.error_file) if error else None
        outcome = self.searcher.outcomes.get(trial.trial_id) or trial_outcome(trial.last_result, self.ledger.metric, error=error)
        if error:
            reason = self.ledger.timeout_reason(trial.trial_id) or trace_tail(error_text) or outcome.reason
            outcome = TrialOutcome(TrialState.FAIL, None, reason)
        if outcome.state == INTERRUPTED:
            record.outcome = outcome
            return  # left RUNNING everywhere: the next runner retries it in the same MLflow run
        fault_point("trial_recorded")
        # Kept whole: with the trials' storage in a bucket its path is a key there, not a local folder.
        record.checkpoint = trial.checkpoint
        self.close(record, outcome, error_text)

    def close(self, record: TrialRecord, outcome: TrialOutcome, error_text: str | None = None) -> None:
        """Record a trial's end everywhere but Optuna (already told): the ledger, MLflow, progress, events."""
        if not self.ledger.end(record, outcome):
            return
        ledger = self.ledger
        # Tune reports a trial's end as it happens, just after Optuna was told (datetime_complete):
        # its run ends now, not when the write is made.
        self.update_run(record, RunUpdate.end(outcome.state, reason=outcome.reason, error_text=error_text, end_time=now_ms()))
        if self.progress is not None:
            self.progress.trial_done(outcome.state, ledger.best_value)
        if self.control is not None:
            if outcome.state == TrialState.FAIL:
                self.writer.submit_store(self.control.on_event, "trial_failed", f"trial {record.number} failed: {outcome.reason}")
            # The finished trial itself too: the runner keeps the job row's snapshot for `status`.
            finished = TrialSummary(record.number, outcome.state, outcome.value, dict(record.params), values=outcome.values)
            self.writer.submit_store(self.control.on_progress, ledger.finished, ledger.best_value, finished)

    def update_run(self, record: TrialRecord, update: RunUpdate) -> None:
        """Queue an update of the trial's run; the run exists by then (the writer keeps order)."""
        runs = self.trial_runs
        if runs is None or not self.tracking or record.run_ref is None:
            return

        def update_run(merged: RunUpdate) -> None:
            run_id = record.run_id
            if run_id is not None:
                runs.update_run(run_id, merged)

        self.writer.submit_update(record.ray_trial_id, update, update_run)

    def tag_run(self, trial_id: str, tags: dict[str, str]) -> None:
        """Queue tags for trial ``trial_id``'s run (nothing when the trial has no record or run)."""
        record = self.ledger.get(trial_id)
        if record is not None:
            self.update_run(record, RunUpdate(tags=tags))

    def flush(self) -> None:
        """Wait for every queued tracking write (before reading the runs back).

        Writes held while the MLflow server was down get ``tracking_grace_s`` more seconds for
        it to come back; what is then still untracked is said in the job's events.
        """
        holding = self.writer.holding
        if holding and self.control is not None:
            self.control.on_event(
                "tracking_waiting",
                f"the MLflow tracking server is unreachable; {holding} tracking writes wait for it "
                f"(up to {self.tracking_grace_s:g} s more)",
            )
        self.writer.flush(wait_s=self.tracking_grace_s)
        if self.control is not None:
            if self.writer.untracked:
                self.control.on_event(
                    "tracking_incomplete",
                    f"the MLflow tracking server stayed unreachable: {self.writer.untracked} tracking writes were not recorded "
                    "(trial runs, metrics or states); the Optuna study has every trial",
                )
            elif self.writer.replayed:
                self.control.on_event(
                    "tracking_caught_up",
                    f"the MLflow tracking server was unreachable for a while; {self.writer.replayed} held writes were replayed",
                )

    def shutdown(self) -> None:
        """Finish the queued writes and stop the writer thread."""
        self.writer.close()


class JobStopper(Stopper):
    """Ends the whole Tune run when the job is cancelled, its runner stops, it reached its
    target, or its patience ran out."""

    def __init__(self, ledger: TrialLedger, control: JobControl | None) -> None:
        self.ledger: TrialLedger | None = ledger
        self.control: JobControl | None = control
        self.reason: str | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        if self.control is not None and self.control.stop_reason() is not None:
            return True
        if self.ledger is not None and self.reason is None:
            self.reason = self.ledger.early_stop_reason()
        return self.reason is not None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its stopper; the ledger and the control belong to this process.
        return {"ledger": None, "control": None, "reason": self.reason}


class TrialTimeout(Callback):
    """Stops an attempt of a trial that has run longer than ``timeout_s`` (``budget.trial_timeout_s``).

    A hung trial reports nothing, so no stopper or scheduler ever sees it; this callback looks
    at the running trials on every step of Tune's loop and kills the actor of one that is over
    its time. Tune then handles it like any dead trial process: retried while the spec's
    ``max_retries`` allow, else FAIL, with the reason ``timed out after N s`` (kept in the
    ledger, which MLflow, the events and the Optuna study are told).
    """

    def __init__(self, searcher: StudySearch, ledger: TrialLedger, timeout_s: float) -> None:
        self.searcher: StudySearch | None = searcher
        self.ledger: TrialLedger | None = ledger
        self.timeout_s = timeout_s
        self._started: dict[tuple[str, int], float] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"searcher": None, "ledger": None, "timeout_s": self.timeout_s, "_started": {}}

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        import time

        now = time.monotonic()
        for trial in trials:
            if trial.status != "RUNNING":
                continue
            attempt = (trial.trial_id, int(trial.run_metadata.num_failures))
            started = self._started.setdefault(attempt, now)
            if now - started > self.timeout_s:
                self._stop(trial, attempt)

    def _stop(self, trial: Trial, attempt: tuple[str, int]) -> None:
        import ray

        actor = trial.temporary_state.ray_actor
        searcher, ledger = self.searcher, self.ledger
        if actor is None or searcher is None or ledger is None:
            return
        reason = f"timed out after {self.timeout_s:g} s (budget.trial_timeout_s)"
        ledger.time_out(trial.trial_id, reason)
        self._started[attempt] = float("inf")  # once per attempt
        if trial.run_metadata.num_failures + 1 > trial.max_failures >= 0 and trial.trial_id in searcher.unfinished():
            # The last attempt: tell Optuna the real reason now (Tune's error path would say only
            # that the trial raised); the error path then finds the trial already told.
            searcher.settle(trial.trial_id, TrialOutcome(TrialState.FAIL, None, reason))
        logger.warning("trial %s: %s; stopping it", trial.trial_id, reason)
        ray.kill(actor, no_restart=True)
