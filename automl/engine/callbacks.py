"""Ray Tune callbacks that run in the driver: MLflow tracking and progress, per trial event.

Tune calls the searcher's ``on_trial_complete`` before these callbacks, so the outcome the
Optuna study recorded is already known here and MLflow is told the same.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ray.tune import Callback, Stopper
from ray.tune.result import AUTO_RESULT_KEYS

from automl.control import JobControl
from automl.engine.study_search import INTERRUPTED, StudySearch, TrialOutcome, trial_outcome
from automl.errors import exception_chain
from automl.faults import fault_point
from automl.results import TrialSummary
from automl.states import TrialState
from automl.tracking import MlflowTracker, RunUpdate, TrialRuns, read_text, trace_tail
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

    def trial_done(self, state: str, best: float | None) -> None: ...

    def stop(self) -> None: ...


@dataclass
class TrialRecord:
    """What the driver learned about one trial while it ran."""

    number: int
    ray_trial_id: str
    params: dict[str, Any]
    run_ref: Future[str | None] | str | None = None
    outcome: TrialOutcome | None = None
    checkpoint_path: str | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        """The trial's MLflow run id (waits for the writer to have created the run)."""
        if isinstance(self.run_ref, Future):
            return self.run_ref.result()
        return self.run_ref


def connection_broke(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from or during) is a failed or broken connection,
    not an answer: MLflow's REST client wraps the transport's error in an ``MlflowException``."""
    import http.client

    import requests
    import urllib3

    transport = (
        ConnectionError,  # refused, reset
        http.client.IncompleteRead,  # the answer cut off
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.NewConnectionError,
    )
    return any(isinstance(e, transport) for e in exception_chain(exc))


class TrackingWriter:
    """Makes the MLflow (and job store) writes of a search in one background thread, in order.

    Tune's driver loop then never waits on a tracking store: a write is queued in
    microseconds, and FIFO order keeps every run's writes after its creation. Updates of one
    run that queue up behind each other (:meth:`submit_update`: params, reports, the end) are
    merged into one, so when the driver is busy a trial costs MLflow a create, one
    ``log_batch`` and an end instead of a call per event.

    When a tracking write fails and ``reachable()`` says the tracking server is down, or its
    connection broke (:func:`connection_broke`: the request may have been carried out), the write
    and every tracking write after it wait in a backlog, in order, while the search goes on;
    the server is asked again at most every ``retry_s`` seconds, and the backlog is replayed as
    soon as it answers. Job store writes (:meth:`submit_store`) never wait behind the backlog.
    What is still in the backlog when the search ends (:meth:`flush` gave up) is counted in
    :attr:`untracked` and reported once through ``on_error``.
    """

    def __init__(
        self,
        on_error: Callable[[str], None],
        *,
        reachable: Callable[[], bool] | None = None,
        retry_s: float = 5.0,
    ) -> None:
        self._on_error = on_error
        self._reachable = reachable
        self.retry_s = retry_s
        self._queue: deque[_Write] = deque()
        self._wakeup = threading.Condition()
        self._closed = False
        self._backlog: deque[_Write] = deque()
        self._next_probe = 0.0
        self.down_since: float | None = None
        self.untracked = 0
        self.replayed = 0
        self.merged = 0
        self._thread = threading.Thread(target=self._work, name="automl-tracking", daemon=True)
        self._thread.start()

    def submit(
        self, call: Callable[..., Any], *args: Any, replay: Callable[..., Any] | None = None, **kwargs: Any
    ) -> Future[Any]:
        """Queue a tracking (MLflow) write; its future holds the call's result, or ``None`` if it failed.

        ``replay`` (same arguments) replaces ``call`` when a held write is sent again: a request
        the server carried out just before the connection broke must not be done twice (a
        second run for one trial).
        """
        return self._put(_Write(call, args, kwargs, [Future()], replay, TRACKING))

    def submit_update(self, key: str, update: RunUpdate, call: Callable[[RunUpdate], Any]) -> Future[Any]:
        """Queue ``call(update)``, a write of run ``key``'s update; it merges with the run's next
        queued updates (``RunUpdate.merged``) when they are waiting together."""
        return self._put(_Write(call, (update,), {}, [Future()], None, TRACKING, key))

    def submit_store(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue a job store write: in order with the rest, but never held back while MLflow is down."""
        return self._put(_Write(call, args, kwargs, [Future()], None, STORE))

    def _put(self, write: _Write) -> Future[Any]:
        with self._wakeup:
            if self._closed:
                raise RuntimeError("the tracking writer is closed")
            self._queue.append(write)
            self._wakeup.notify()
        return write.futures[0]

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue and not self._closed:
                    self._wakeup.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            for write in self._coalesce(batch):
                if write.kind == STORE:
                    self._execute(write)
                elif write.kind == CONTROL:
                    write.resolve(write.call())
                else:
                    self._track(write)

    def _coalesce(self, batch: list[_Write]) -> list[_Write]:
        """``batch`` with each run's update merged into that run's earlier update, when no other
        write of the run comes between them; the merged write keeps the earlier place."""
        out: list[_Write] = []
        last: dict[str, _Write] = {}
        for write in batch:
            if write.key is not None and write.key in last:
                earlier = last[write.key]
                earlier.args = (earlier.args[0].merged(write.args[0]),)
                earlier.futures += write.futures
                self.merged += 1
                continue
            if write.key is not None:
                last[write.key] = write
            out.append(write)
        return out

    def _track(self, write: _Write) -> None:
        if self._backlog and not self._drain(wait_s=0.0):
            self._backlog.append(write)
            return
        if not self._execute(write, keep=True):
            self._backlog.append(write)

    def _execute(self, write: _Write, *, keep: bool = False) -> bool:
        """Run one write. ``False`` (nothing resolved) when ``keep`` and the server is unreachable."""
        call = write.replay if write.held and write.replay is not None else write.call
        try:
            write.resolve(call(*write.args, **write.kwargs))
        except Exception as exc:  # noqa: BLE001 - tracking must never take the search down
            # A broken connection is the server going away even while it still accepts one (a
            # server being killed does, for a moment): held, and replayed, like a refused one.
            if keep and self._reachable is not None and (connection_broke(exc) or not self._reachable()):
                write.held = True
                if self.down_since is None:
                    self.down_since = time.monotonic()
                    logger.warning("MLflow tracking server unreachable (%s); holding tracking writes until it answers", exc)
                self._next_probe = time.monotonic() + self.retry_s
                return False
            self._on_error(f"{write.name}: {type(exc).__name__}: {exc}")
            write.resolve(None)
        return True

    def _drain(self, *, wait_s: float) -> bool:
        """Replay the backlog in order if the server answers (asking until ``wait_s`` has passed); ``True`` once empty."""
        deadline = time.monotonic() + wait_s
        while self._backlog:
            now = time.monotonic()
            if now < self._next_probe:
                if now >= deadline:
                    return False
                time.sleep(min(self._next_probe, deadline) - now)
                continue
            if not self._execute(self._backlog[0], keep=True):
                continue  # still down: _execute set the next probe time
            self._backlog.popleft()
            self.replayed += 1
            if not self._backlog and self.down_since is not None:
                logger.warning(
                    "MLflow tracking server back after %.0f s; %d held writes replayed",
                    time.monotonic() - self.down_since,
                    self.replayed,
                )
                self.down_since = None
        return True

    def flush(self, *, wait_s: float = 0.0) -> None:
        """Wait until every write queued so far is done. Held writes get ``wait_s`` more seconds
        for the server to come back; then they are given up (counted in :attr:`untracked`)."""

        def settle() -> None:
            if self._backlog and not self._drain(wait_s=wait_s):
                lost = len(self._backlog)
                self.untracked += lost
                for write in self._backlog:
                    write.resolve(None)
                self._backlog.clear()
                self._on_error(f"the MLflow tracking server did not come back: {lost} tracking writes were not recorded")

        self._put(_Write(settle, (), {}, [Future()], None, CONTROL)).result()

    @property
    def holding(self) -> int:
        """Tracking writes waiting for the server now."""
        return len(self._backlog)

    def close(self) -> None:
        """Finish the queued writes and stop the writer thread."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join()


TRACKING, STORE, CONTROL = "tracking", "store", "control"


@dataclass
class _Write:
    call: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    futures: list[Future[Any]]
    replay: Callable[..., Any] | None
    kind: str
    key: str | None = None  # the run an update writes to (merged with that run's next updates)
    held: bool = False

    @property
    def name(self) -> str:
        return getattr(self.call, "__name__", "tracking")

    def resolve(self, result: Any) -> None:
        for future in self.futures:
            future.set_result(result)


class JobCallback(Callback):
    """Follows every trial: opens and fills its MLflow run, tracks the best, drives the progress bar."""

    def __init__(
        self,
        searcher: StudySearch,
        metric: str,
        mode: str,
        *,
        tracker: MlflowTracker | None = None,
        progress: ProgressSink | None = None,
        control: JobControl | None = None,
        existing_runs: dict[int, str] | None = None,
        finished: int = 0,
        best_value: float | None = None,
        target: float | None = None,
        patience: int | None = None,
        tracking_retry_s: float = 5.0,
        tracking_grace_s: float | None = None,
        trial_runs: TrialRuns | None = None,
    ) -> None:
        self.searcher = searcher
        # Who makes the trial-run writes: the tracker itself, or the job's writer process
        # (automl.engine.write_behind.RemoteTrialRuns, the same four methods).
        self.trial_runs: TrialRuns | None = trial_runs if trial_runs is not None else tracker
        # How long a finished search waits for a down MLflow server before giving its held writes up.
        self.tracking_grace_s = tracking_grace_s if tracking_grace_s is not None else float(os.environ.get(GRACE_ENV, "30"))
        self.metric = metric
        self.mode = mode
        self.tracker = tracker
        self.progress = progress
        self.control = control
        self.existing_runs = dict(existing_runs or {})
        self.records: dict[str, TrialRecord] = {}
        self.finished = finished
        self.best_value = best_value
        self.target = target
        self.patience = patience
        self.since_best = 0
        self.tracking_errors: list[str] = []
        # Ray trial id -> why the trial's last attempt was stopped by the per-trial time limit.
        self.timed_out: dict[str, str] = {}
        self._trials: dict[str, Trial] = {}
        # Tune tells the searcher a trial failed before it calls us: let it read the error itself,
        # so the Optuna study records the trial's own error, as MLflow and the events do.
        searcher.error_reason = self.error_reason
        self.writer = TrackingWriter(
            self._tracking_failed, reachable=tracker.reachable if tracker is not None else None, retry_s=tracking_retry_s
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

    def error_reason(self, trial_id: str) -> str | None:
        """Why a trial failed, in one line: the per-trial time limit, or the tail of its error."""
        if trial_id in self.timed_out:
            return self.timed_out[trial_id]
        trial = self._trials.get(trial_id)
        return trace_tail(read_text(trial.error_file)) if trial is not None else None

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._trials[trial.trial_id] = trial
        if trial.trial_id in self.records:
            return  # a retry of a failed trial (FailureConfig): it keeps its run
        params = {k: v for k, v in trial.config.items() if k != TRIAL_NUMBER_KEY}
        number = trial.config.get(TRIAL_NUMBER_KEY)
        if number is None:
            number = self.searcher.trial_number(trial.trial_id) or 0
        record = TrialRecord(int(number), trial.trial_id, params)
        self.records[trial.trial_id] = record
        runs = self.trial_runs
        if self.tracker is None or runs is None:
            return
        if record.number in self.existing_runs:  # a trial retried after its runner stopped
            record.run_ref = self.existing_runs[record.number]
            self.writer.submit(runs.reopen_trial, record.run_ref, {"automl.ray_trial_id": trial.trial_id})
        else:
            record.run_ref = self.writer.submit(
                runs.create_trial_run,
                record.number,
                {"automl.ray_trial_id": trial.trial_id},
                replay=runs.find_or_create_trial_run,
            )
            self.update_run(record, RunUpdate(params=params))

    def open_record(self, trial_id: str, number: int, params: dict[str, Any]) -> TrialRecord:
        """A record (and MLflow run) for a trial that Tune never started, so it is tracked too."""
        record = TrialRecord(number, trial_id, dict(params))
        self.records[trial_id] = record
        runs = self.trial_runs
        if self.tracker is not None and runs is not None:
            record.run_ref = self.writer.submit(
                runs.create_trial_run, number, {"automl.ray_trial_id": trial_id}, replay=runs.find_or_create_trial_run
            )
            self.update_run(record, RunUpdate(params=record.params))
        return record

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        if result.get(FINAL_KEY):
            fault_point("trial_reported")
        metrics = user_metrics(result)
        record.last_metrics = metrics
        if self.tracker is not None and record.run_ref is not None and metrics:
            step = int(result.get(STEP_KEY) or result.get("training_iteration") or 0)
            self.update_run(record, RunUpdate.report(metrics, step))

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # Tune restarts a trial that raised or whose process died (FailureConfig): same trial,
        # same Optuna trial and MLflow run; the failed attempt is an event and a tag.
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        attempt = int(trial.run_metadata.num_failures)
        reason = self.timed_out.pop(trial.trial_id, None) or trace_tail(read_text(trial.error_file)) or "the trial failed"
        if self.tracker is not None and record.run_ref is not None:
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
        record = self.records.get(trial.trial_id)
        if record is None or record.outcome is not None:
            return
        error_text = read_text(trial.error_file) if error else None
        outcome = self.searcher.outcomes.get(trial.trial_id) or trial_outcome(trial.last_result, self.metric, error=error)
        if error:
            reason = self.timed_out.get(trial.trial_id) or trace_tail(error_text) or outcome.reason
            outcome = TrialOutcome(TrialState.FAIL, None, reason)
        record.outcome = outcome
        if outcome.state == INTERRUPTED:
            return  # left RUNNING everywhere: the next runner retries it in the same MLflow run
        fault_point("trial_recorded")
        checkpoint = trial.checkpoint
        record.checkpoint_path = checkpoint.path if checkpoint is not None else None
        self.close(record, outcome, error_text)

    def close(self, record: TrialRecord, outcome: TrialOutcome, error_text: str | None = None) -> None:
        """Record a trial's end everywhere but Optuna (already told): MLflow, progress, events."""
        record.outcome = outcome
        self.finished += 1
        if outcome.state == TrialState.COMPLETE and outcome.value is not None and self._improves(outcome.value):
            self.best_value = outcome.value
            self.since_best = 0
        else:
            self.since_best += 1
        if self.tracker is not None and record.run_ref is not None:
            self.update_run(record, RunUpdate.end(outcome.state, reason=outcome.reason, error_text=error_text))
        if self.progress is not None:
            self.progress.trial_done(outcome.state, self.best_value)
        if self.control is not None:
            if outcome.state == TrialState.FAIL:
                self.writer.submit_store(self.control.on_event, "trial_failed", f"trial {record.number} failed: {outcome.reason}")
            # The finished trial itself too: the runner keeps the job row's snapshot for `status`.
            finished = TrialSummary(record.number, outcome.state, outcome.value, dict(record.params), values=outcome.values)
            self.writer.submit_store(self.control.on_progress, self.finished, self.best_value, finished)

    def update_run(self, record: TrialRecord, update: RunUpdate) -> None:
        """Queue an update of the trial's run; the run exists by then (the writer keeps order)."""
        runs = self.trial_runs
        if self.tracker is None or runs is None or record.run_ref is None:
            return

        def update_run(merged: RunUpdate) -> None:
            run_id = record.run_id
            if run_id is not None:
                runs.update_run(run_id, merged)

        self.writer.submit_update(record.ray_trial_id, update, update_run)

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

    def _tracking_failed(self, message: str) -> None:
        logger.warning("MLflow tracking failed: %s", message)
        self.tracking_errors.append(message)

    def early_stop_reason(self) -> str | None:
        """Why the job should stop before its trial budget is spent, if it should."""
        if self.target is not None and self.best_value is not None:
            reached = self.best_value >= self.target if self.mode == "max" else self.best_value <= self.target
            if reached:
                return f"the target {self.metric} {self.target:g} was reached ({self.best_value:.6g})"
        if self.patience is not None and self.since_best >= self.patience:
            return f"no new best {self.metric} in the last {self.since_best} trials"
        return None

    def _improves(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def safely(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """Tracking must never take the search down: a failed write is kept and reported at the end."""
        try:
            return call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            message = f"{getattr(call, '__name__', 'tracking')}: {type(exc).__name__}: {exc}"
            logger.warning("MLflow tracking failed: %s", message)
            self.tracking_errors.append(message)
            return None


class JobStopper(Stopper):
    """Ends the whole Tune run when the job is cancelled, its runner stops, it reached its
    target, or its patience ran out."""

    def __init__(self, callback: JobCallback, control: JobControl | None) -> None:
        self.callback: JobCallback | None = callback
        self.control: JobControl | None = control
        self.reason: str | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        if self.control is not None and self.control.stop_reason() is not None:
            return True
        if self.callback is not None and self.reason is None:
            self.reason = self.callback.early_stop_reason()
        return self.reason is not None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its stopper; the callback and the control belong to this process.
        return {"callback": None, "control": None, "reason": self.reason}


class TrialTimeout(Callback):
    """Stops an attempt of a trial that has run longer than ``timeout_s`` (``budget.trial_timeout_s``).

    A hung trial reports nothing, so no stopper or scheduler ever sees it; this callback looks
    at the running trials on every step of Tune's loop and kills the actor of one that is over
    its time. Tune then handles it like any dead trial process: retried while the spec's
    ``max_retries`` allow, else FAIL, with the reason ``timed out after N s`` (kept in
    ``callback.timed_out``, which MLflow, the events and the Optuna study are told).
    """

    def __init__(self, callback: JobCallback, timeout_s: float) -> None:
        self.callback: JobCallback | None = callback
        self.timeout_s = timeout_s
        self._started: dict[tuple[str, int], float] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"callback": None, "timeout_s": self.timeout_s, "_started": {}}

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
        if actor is None or self.callback is None:
            return
        reason = f"timed out after {self.timeout_s:g} s (budget.trial_timeout_s)"
        self.callback.timed_out[trial.trial_id] = reason
        self._started[attempt] = float("inf")  # once per attempt
        searcher = self.callback.searcher
        if trial.run_metadata.num_failures + 1 > trial.max_failures >= 0 and trial.trial_id in searcher.unfinished():
            # The last attempt: tell Optuna the real reason now (Tune's error path would say only
            # that the trial raised); the error path then finds the trial already told.
            searcher.settle(trial.trial_id, TrialOutcome(TrialState.FAIL, None, reason))
        logger.warning("trial %s: %s; stopping it", trial.trial_id, reason)
        ray.kill(actor, no_restart=True)
