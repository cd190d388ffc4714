"""The runner's side of a job that runs in a Ray driver of its own (:mod:`automl.service.job_driver`):
which jobs do, starting the driver, following it, and settling the job if the driver fails it.

Ray gives each driver process one ``runtime_env``, so a job whose code travels to a cluster, or
that names pip requirements, runs in a child process of its runner. What must stay true: the
runner never renews such a job's lease itself (the driver does, under the runner's id), so a
runner and driver killed together leave the lease to expire and the job to resume elsewhere; and
a driver that ends without settling its job leaves it failed (or released, if the runner is
stopping) with the driver's last words, never running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from automl.states import JobState

if TYPE_CHECKING:
    from automl.engine.callbacks import ProgressSink
    from automl.results import SearchResult
    from automl.settings import Settings
    from automl.store import JobStore, JobView

logger = logging.getLogger(__name__)
POLL_S = 0.5
# A job whose driver died this many times (its attempts) fails instead of going back to the queue:
# a driver that dies every time is a fault of the job, not of the machine it ran on.
MAX_DRIVER_ATTEMPTS = 3


def needs_own_driver(job: JobView, settings: Settings) -> bool:
    """Whether ``job`` runs in a driver of its own: it ships code to a cluster, or names requirements."""
    if job.code_sha256 is None:
        return False
    if settings.ray_address:
        return True
    import yaml

    return bool(((yaml.safe_load(job.spec_yaml) or {}).get("code") or {}).get("requirements"))


def driver_log(settings: Settings, job_id: str) -> Path:
    """Where a job's driver writes its log: ``$AUTOML_HOME/drivers/<job id>.log``."""
    return settings.home / "drivers" / f"{job_id}.log"


def result_file(settings: Settings, job_id: str) -> Path:
    """Where a job's driver leaves the job's result for its runner (the two share this machine)."""
    return settings.home / "drivers" / f"{job_id}.result.pickle"


class DriverProcesses:
    """The job drivers a runner started, by job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def add(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children[job_id] = process

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._children.pop(job_id, None)

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every driver still running (SIGTERM: release the job; SIGUSR1: cancel it)."""
        with self._lock:
            children = list(self._children.values())
        for process in children:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)


@dataclass(frozen=True)
class DriverRunner:
    """What a runner lends the driver of one of its jobs."""

    store: JobStore
    settings: Settings
    runner_id: str
    lease_s: float
    drivers: DriverProcesses
    stopping: threading.Event


def drive_in_child(runner: DriverRunner, job: JobView, sink: ProgressSink | None) -> SearchResult | None:
    """Run ``job`` in a driver process of its own, follow it into ``sink``, and return its result."""
    import ray

    log_path = driver_log(runner.settings, job.id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # A runner on a local Ray (no address): its driver joins that same instance.
    if not runner.settings.ray_address and ray.is_initialized():
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "automl.service.job_driver", job.id, "--runner-id", runner.runner_id]
    command += ["--lease-s", str(runner.lease_s)]
    logger.info("job %s: runs in its own Ray driver (its code travels); log: %s", job.id, log_path)
    with log_path.open("ab") as log:
        # Its own session: a Ctrl-C at the terminal reaches the runner, which decides what it means.
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    runner.drivers.add(job.id, process)
    try:
        _follow(runner.store, job, process, sink)
    finally:
        runner.drivers.drop(job.id)
        if sink is not None:
            sink.stop()
    _settle(runner, job, process.returncode, log_path)
    _say_how_it_ended(runner.store, job)
    result = result_file(runner.settings, job.id)
    if not result.is_file():
        return None
    try:
        return pickle.loads(result.read_bytes())  # written by the driver, this runner's child, just now
    finally:
        result.unlink()


def _follow(store: JobStore, job: JobView, process: subprocess.Popen[bytes], sink: ProgressSink | None) -> None:
    """Wait for the driver, turning the job row's trial counts into ``sink``'s progress."""
    seen: dict[str, int] = {}
    if sink is not None:
        sink.start(job.trials_total)
    while process.poll() is None:
        time.sleep(POLL_S)
        if sink is None:
            continue
        with contextlib.suppress(Exception):  # progress is a view; the job goes on without it
            now = store.get(job.id)
            counts = now.snapshot.counts if now.snapshot is not None else {}
            for state, count in counts.items():
                for _ in range(count - seen.get(state, 0)):
                    sink.trial_done(state, now.best_value)
            seen = dict(counts)


def _settle(runner: DriverRunner, job: JobView, returncode: int | None, log_path: Path) -> None:
    """A driver that died with its job still running here: the job goes back to the queue and
    resumes from its study, as after a runner's death; after :data:`MAX_DRIVER_ATTEMPTS` it fails.
    Either way with the driver's last line."""
    now = runner.store.get(job.id)
    if now.state != JobState.RUNNING or now.runner_id != runner.runner_id:
        return
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    last = lines[-1][:500] if lines else "(no output)"
    message = f"the job's Ray driver exited with code {returncode} without ending the job: {last} (log: {log_path})"
    if runner.stopping.is_set() or now.attempts < MAX_DRIVER_ATTEMPTS:
        logger.error("job %s: %s; it goes back to the queue (attempt %d)", job.id, message, now.attempts)
        runner.store.release(job.id, runner.runner_id, message=message)
    else:
        message += f" (attempt {now.attempts} of {MAX_DRIVER_ATTEMPTS})"
        logger.error("job %s failed: %s", job.id, message)
        runner.store.finish(job.id, runner.runner_id, JobState.FAILED, message=message, error=message)


def _say_how_it_ended(store: JobStore, job: JobView) -> None:
    """The runner's own log says how a job its driver ran ended, as for a job run in its process."""
    now = store.get(job.id)
    last = store.events(job.id, limit=1)
    said = last[-1].message if last else now.state
    if now.state == JobState.FAILED:
        logger.error("job %s failed: %s", job.id, " ".join((now.error or said).split()))
    elif now.is_final:
        logger.info("job %s (%s): %s: %s", job.id, job.name, now.state, said)


def write_result(settings: Settings, job_id: str, result: SearchResult) -> None:
    """Leave ``result`` where :func:`drive_in_child` reads it (the driver's side)."""
    target = result_file(settings, job_id)
    staging = target.with_suffix(".tmp")
    staging.write_bytes(pickle.dumps(result))
    staging.replace(target)
