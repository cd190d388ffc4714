"""The job runner: claims queued jobs, runs them, keeps their leases alive, and lets go cleanly.

A runner holds each job by a lease that its :class:`Heartbeat` renews. If the runner dies
the lease expires and another runner reclaims the job and resumes it from its Optuna study.
On SIGTERM/SIGINT a runner stops taking jobs, stops its running trials and puts its jobs back
in the queue (``release``); the trials it interrupted are retried by whoever resumes them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from automl.errors import AutomlError
from automl.faults import fault_point
from automl.service.driver_process import DriverProcesses
from automl.states import JobState, StopReason

if TYPE_CHECKING:
    from automl.engine.callbacks import ProgressSink
    from automl.results import SearchResult, TrialSummary
    from automl.service.notify import Notifier
    from automl.settings import Settings
    from automl.store import JobStore, JobView
    from automl.store.snapshot import SnapshotBuilder

logger = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0


@dataclass
class JobFlags:
    """What the heartbeat learned about one held job."""

    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)


class Heartbeat:
    """Renews the leases of the jobs a runner holds, and notices cancel requests and lost leases.

    One thread per runner, like Optuna's heartbeat: it beats every ``lease_s / 3`` seconds, so
    a lease survives two missed beats (a slow database, a long pause).
    """

    def __init__(self, store: JobStore, runner_id: str, *, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.store = store
        self.runner_id = runner_id
        self.lease_s = lease_s
        self.interval_s = max(lease_s / 3.0, 0.2)
        self._held: dict[str, JobFlags] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{runner_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 5)

    def hold(self, job_id: str) -> JobFlags:
        """Start renewing ``job_id``'s lease; return the flags the heartbeat will raise for it."""
        with self._lock:
            return self._held.setdefault(job_id, JobFlags())

    def held(self) -> list[JobFlags]:
        """The flags of every job held now."""
        with self._lock:
            return list(self._held.values())

    def drop(self, job_id: str) -> None:
        """Stop renewing ``job_id`` (it finished or was released)."""
        with self._lock:
            self._held.pop(job_id, None)

    def beat_once(self) -> None:
        """Renew every held lease now and check for cancel requests."""
        with self._lock:
            held = dict(self._held)
        for job_id, flags in held.items():
            try:
                if not self.store.renew(job_id, self.runner_id, lease_s=self.lease_s):
                    logger.warning("lost the lease of job %s", job_id)
                    flags.lost.set()
                elif self.store.cancel_requested(job_id):
                    flags.cancel.set()
            except AutomlError as exc:  # the store retries with backoff itself; try again next beat
                logger.warning("heartbeat for job %s failed: %s", job_id, exc)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat_once()


class StoreControl:
    """Steers one job's search from the job store (see :class:`automl.control.JobControl`)."""

    def __init__(self, store: JobStore, job: JobView, runner_id: str, flags: JobFlags, stopping: threading.Event) -> None:
        self.store = store
        self.job = job
        self.runner_id = runner_id
        self.flags = flags
        self.stopping = stopping
        # The job row's snapshot (counts, top trials, Pareto front), kept up to date per trial;
        # set by the runner from the study before the search starts.
        self.snapshot: SnapshotBuilder | None = None

    def stop_reason(self) -> StopReason | None:
        if self.flags.cancel.is_set():
            return StopReason.CANCEL
        if self.flags.lost.is_set() or self.stopping.is_set():
            return StopReason.RELEASE
        return None

    def on_tracking(self, experiment_id: str | None, run_id: str | None) -> None:
        self.store.record_tracking(self.job.id, self.runner_id, experiment_id=experiment_id, run_id=run_id)

    def on_progress(self, finished: int, best: float | None, trial: TrialSummary | None = None) -> None:
        snapshot = None
        if trial is not None and self.snapshot is not None:
            self.snapshot.add(trial)
            snapshot = self.snapshot.snapshot()
        self.store.record_progress(self.job.id, self.runner_id, finished=finished, best_value=best, snapshot=snapshot)

    def on_event(self, kind: str, message: str) -> None:
        self.store.add_event(self.job.id, kind, message, runner_id=self.runner_id)


def cluster_resources(settings: Settings) -> str:
    """What the job's Ray cluster has, in words (a job's ``resources`` event; ``rerun`` compares)."""
    import ray

    from automl.engine.cluster import ensure_ray

    ensure_ray(settings.ray_address)
    total = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return f"{nodes} node(s), {total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs"


def default_runner_id() -> str:
    """``host:pid:random``: unique per runner process, readable in ``status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Runner:
    """Claims jobs from ``store`` and runs up to ``concurrency`` of them at once, each in a thread.

    Args:
        store: the job store.
        settings: where the searches keep their state (Optuna storage, MLflow, Ray).
        concurrency: jobs run at once by this runner.
        lease_s: how long a lease lasts without a heartbeat.
        poll_s: how often to look for new jobs when idle.
        progress_factory: makes a progress sink for a job (the CLI's bar), or ``None``.
        own_drivers: run a job whose code travels to a cluster (or that needs packages installed)
            in a driver process of its own (:mod:`automl.service.job_driver`): Ray gives each
            driver one ``runtime_env``. ``False`` in that driver itself.
    """

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        *,
        runner_id: str | None = None,
        concurrency: int = 1,
        lease_s: float = DEFAULT_LEASE_S,
        poll_s: float = 2.0,
        progress_factory: Callable[[JobView], ProgressSink | None] | None = None,
        own_drivers: bool = True,
    ) -> None:
        self.store = store
        self.settings = settings
        self.runner_id = runner_id or default_runner_id()
        self.concurrency = max(1, concurrency)
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.progress_factory = progress_factory
        self.own_drivers = own_drivers
        self.drivers = DriverProcesses()  # the jobs running in drivers of their own
        self.stopping = threading.Event()
        self.heartbeat = Heartbeat(store, self.runner_id, lease_s=lease_s)
        self.results: dict[str, SearchResult | None] = {}
        self._threads: dict[str, threading.Thread] = {}
        self.notifier: Notifier | None = None  # sends the webhooks of jobs that ended, while run() runs

    def stop(self, *_: Any) -> None:
        """Stop taking jobs; running jobs stop their trials and go back to the queue."""
        if not self.stopping.is_set():
            logger.warning("runner %s stopping: releasing its jobs", self.runner_id)
        self.stopping.set()
        self.drivers.signal_all(signal.SIGTERM)

    def cancel_all(self, *_: Any) -> None:
        """Cancel the jobs running here (``automl run``'s Ctrl-C); a second Ctrl-C quits at once."""
        logger.warning("cancelling the running job(s)")
        for flags in self.heartbeat.held():
            flags.cancel.set()
        self.drivers.signal_all(signal.SIGUSR1)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def run(self, *, until_idle: bool = False, job_id: str | None = None, interrupt_cancels: bool = False) -> None:
        """Claim and run jobs until stopped (or, with ``until_idle``, until no job is left to run).

        With ``until_idle`` the runner returns once no job is queued or running anywhere: it
        waits for the jobs other runners hold, since a runner may have died holding them (kill -9
        leaves them ``running`` until their lease expires), and reclaims those whose lease runs out.
        SIGTERM stops the runner cleanly (its jobs go back to the queue); so does SIGINT, unless
        ``interrupt_cancels``, when it cancels them. With ``job_id``, run only that job
        (``automl run``): claim it, run it, return.
        """
        from automl.engine.cluster import ensure_ray
        from automl.service.notify import notifier_from_env
        from automl.settings import prepare

        # Before anything else: a wrong AUTOML_WEBHOOKS stops the runner at once, naming it.
        notifier = notifier_from_env(self.store)
        # The state directory first: with the job store elsewhere (PostgreSQL) nothing else has
        # made it yet, and the default Optuna storage and Tune's results live there.
        prepare(self.settings)
        ensure_ray(self.settings.ray_address)
        # After ray.init: Ray installs its own SIGTERM handler, which would kill the process.
        # The handlers before ours come back when the loop ends: a runner inside a longer-lived
        # process (a test session, a notebook) must not leave Ctrl-C and SIGTERM pointing at it.
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.cancel_all if interrupt_cancels else self.stop)
        self.heartbeat.start()
        # On its own thread: a receiver that hangs holds up no job and, past a second, not the exit.
        self.notifier = notifier.start()
        waited_for: list[str] = []
        try:
            while not self.stopping.is_set():
                self._reap()
                if len(self._threads) < self.concurrency:
                    job = self.store.claim(self.runner_id, lease_s=self.lease_s, job_id=job_id)
                    if job is not None:
                        self._start(job)
                        continue
                if job_id is not None and not self._threads:
                    break
                if until_idle and not self._threads:
                    held = self.store.list(states=(JobState.QUEUED, JobState.RUNNING), limit=8)
                    if not held:
                        break
                    waited_for = self._say_waiting(held, waited_for)
                self.stopping.wait(self.poll_s if not self._threads else min(self.poll_s, 0.5))
            for thread in list(self._threads.values()):
                while thread.is_alive():
                    thread.join(timeout=0.5)
            self._reap()
        finally:
            self.heartbeat.stop()
            notifier.stop()  # a last look: the webhooks of the jobs that just ended
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _say_waiting(self, held: list[JobView], before: list[str]) -> list[str]:
        """Log, once per change, which jobs keep an idle ``--until-idle`` runner from exiting."""
        ids = sorted(job.id for job in held)
        running = [j for j in held if j.state == JobState.RUNNING]
        if ids != before and running:  # a queued job is claimed on the next look: nothing to say
            leases = ", ".join(
                f"{j.id} (runner {j.runner_id}, lease until {j.lease_expires_at:%H:%M:%S} UTC)"
                for j in running
                if j.lease_expires_at
            )
            logger.info(
                "not idle yet: %d job(s) running elsewhere%s; waiting for them to end, or for their leases to "
                "expire to reclaim them",
                len(running),
                f": {leases}" if leases else "",
            )
        return ids

    def _start(self, job: JobView) -> None:
        logger.info("job %s (%s): claimed, attempt %d", job.id, job.name, job.attempts)
        thread = threading.Thread(target=self.run_job, args=(job,), name=f"job-{job.id}", daemon=True)
        self._threads[job.id] = thread
        thread.start()

    def _reap(self) -> None:
        for job_id, thread in list(self._threads.items()):
            if not thread.is_alive():
                del self._threads[job_id]
                if self.notifier is not None:
                    self.notifier.wake()  # the job ended: its webhooks now, not at the next poll

    def run_job(self, job: JobView) -> None:
        """Run one claimed job to a final state, or release it when the runner stops."""
        from automl.service.driver_process import DriverRunner, drive_in_child, needs_own_driver

        if self.own_drivers and needs_own_driver(job, self.settings):
            lent = DriverRunner(self.store, self.settings, self.runner_id, self.lease_s, self.drivers, self.stopping)
            sink = self.progress_factory(job) if self.progress_factory else None
            self.results[job.id] = drive_in_child(lent, job, sink)
            return
        self.run_job_here(job)

    def run_job_here(self, job: JobView) -> None:
        """Run one claimed job in this process, to a final state, or release it when the runner stops."""
        from automl.engine import plan_search, run_search
        from automl.engine.plan import plan_from_json
        from automl.service.job_results import study_trials
        from automl.service.submit import job_settings
        from automl.shipping.travel import attach_data, job_provenance, unpacked_code
        from automl.spec import parse_spec
        from automl.store.snapshot import SnapshotBuilder

        flags = self.heartbeat.hold(job.id)
        control = StoreControl(self.store, job, self.runner_id, flags, self.stopping)
        try:
            base_dir = Path(job.base_dir) if job.base_dir else None
            code_dir = unpacked_code(self.store, job, self.settings)
            # The plan checked at submit is trusted; only a job queued before plans were stored
            # (or with a plan of an older format) is parsed and planned here. The cluster's resources,
            # which can change between submit and run, are checked by run_search either way.
            stored = plan_from_json(job.plan_json, base_dir=base_dir, code_dir=code_dir) if job.plan_json else None
            plan = stored or plan_search(
                parse_spec(yaml.safe_load(job.spec_yaml), source=f"job {job.id}"), base_dir=code_dir or base_dir
            )
            plan = attach_data(plan, self.store, job, self.settings)
            control.on_event("resources", cluster_resources(self.settings))
            spec = plan.spec
            # Start the snapshot from what the study holds (a resumed job); trials then add to it.
            control.snapshot = SnapshotBuilder(plan.modes, study_trials(self.settings, job.study_name))
            self.store.record_snapshot(job.id, self.runner_id, control.snapshot.snapshot())
            sink = self.progress_factory(job) if self.progress_factory else None
            result = run_search(
                plan,
                # Tracked where the spec's own tracking.tracking_uri says, as automl.search does.
                settings=job_settings(self.settings, spec),
                study_name=job.study_name,
                progress=sink,
                control=control,
                parent_run_id=job.mlflow_run_id,
                # Recorded when the job's run is created; a resumed job's run has it already.
                provenance=job_provenance(self.store, job) if job.mlflow_run_id is None else None,
            )
            self.results[job.id] = result
            self._conclude(job, control, result)
        except Exception as exc:  # whatever went wrong, the job must not stay running
            self.results[job.id] = None
            message = str(exc) if isinstance(exc, AutomlError) else f"{type(exc).__name__}: {exc}"
            # One line, the reason the job row keeps; the traceback only at DEBUG (automl --debug
            # worker), and said so for an error nobody raised on purpose.
            expected = isinstance(exc, AutomlError)
            hint = "" if expected else " (run the worker with --debug for the traceback)"
            logger.error("job %s failed: %s%s", job.id, " ".join(message.split()), hint)
            logger.debug("job %s failed here:", job.id, exc_info=True)
            self._resnapshot(job)
            if control.stop_reason() == StopReason.RELEASE and not flags.lost.is_set():
                self.store.release(job.id, self.runner_id, message=f"runner stopping after an error: {message}")
            elif not flags.lost.is_set():
                self.store.finish(job.id, self.runner_id, JobState.FAILED, message=message, error=message)
        finally:
            self.heartbeat.drop(job.id)

    def _resnapshot(self, job: JobView, result: SearchResult | None = None) -> None:
        """Rewrite the job row's snapshot from the study (the record), as the job stops running here."""
        from automl.service.job_results import snapshot_from_study
        from automl.store.snapshot import JobSnapshot

        try:
            if result is not None:
                best_run = next((t.run_id for t in result.trials if t.number == result.best_trial_number), None)
                snapshot = dataclasses.replace(
                    JobSnapshot.of_trials(result.trials, result.modes or (result.mode,)),
                    model_uri=result.model_uri,
                    best_run_id=best_run,
                    concluded=True,
                )
            else:
                snapshot = snapshot_from_study(self.settings, job.study_name)
            self.store.record_snapshot(job.id, self.runner_id, snapshot)
        except Exception:  # the job's final state matters more than its snapshot
            logger.warning("job %s: could not update its snapshot", job.id, exc_info=True)

    def _conclude(self, job: JobView, control: StoreControl, result: SearchResult) -> None:
        fault_point("job_finishing")
        self._resnapshot(job, result)
        reason = control.stop_reason()
        counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.state_counts.items()))
        logger.info(
            "job %s (%s): %s; trials: %s",
            job.id,
            job.name,
            {None: "done", StopReason.CANCEL: "cancelled", StopReason.RELEASE: "released"}[reason],
            counts,
        )
        if reason == StopReason.CANCEL:
            self.store.finish(job.id, self.runner_id, JobState.CANCELLED, message=f"cancelled; trials: {counts}")
        elif reason == StopReason.RELEASE:
            if not control.flags.lost.is_set():
                self.store.release(job.id, self.runner_id, message=f"runner {self.runner_id} stopped; trials so far: {counts}")
        elif result.best_value is None:
            self.store.finish(
                job.id, self.runner_id, JobState.FAILED, message=f"no trial completed ({counts})", error="no trial completed"
            )
        else:
            self.store.finish(
                job.id,
                self.runner_id,
                JobState.SUCCEEDED,
                message=f"best {result.metric} = {result.best_value:.6g} (trial {result.best_trial_number}); trials: {counts}",
            )
