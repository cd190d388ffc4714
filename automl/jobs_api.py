"""The Python API for queued jobs: submit a job file, read a job back, cancel it, get its best trial.

Each call goes through ``automl server`` when one is named (``server=``/``token=``, or
``AUTOML_SERVER``/``AUTOML_TOKEN``), else to the job store this machine's settings name (the
embedded default), exactly as the CLI does; it returns the same views either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl.service.job_service import JobService
    from automl.store import EventView, JobView
    from automl.store.snapshot import JobSnapshot


@dataclass(frozen=True)
class JobStatus:
    """A job, its trial counts and top trials (``snapshot``), and its latest events."""

    job: JobView
    snapshot: JobSnapshot
    events: list[EventView]


def connect(server: str | None = None, token: str | None = None) -> JobService:
    """The job service: the server at ``server`` (or ``$AUTOML_SERVER``) with ``token`` (or
    ``$AUTOML_TOKEN``), else the local job store.

    Raises:
        InputError: a server is named without a token.
    """
    from automl.client import RemoteJobService, server_from_env
    from automl.errors import InputError

    if server:
        import os

        token = token or os.environ.get("AUTOML_TOKEN")
        if not token:
            raise InputError("a server needs a token: pass token= or set AUTOML_TOKEN")
        return RemoteJobService(server, token)
    remote = server_from_env()
    if remote is not None:
        return remote
    from automl.service import open_job_store
    from automl.service.job_service import LocalJobService
    from automl.settings import resolve_settings

    settings = resolve_settings()
    return LocalJobService(open_job_store(settings), settings)


def submit(
    job_file: str | Path, *, wait: bool = False, timeout_s: float | None = None, service: JobService | None = None
) -> JobView:
    """Check a job file and queue it (its code package and data file with it); with ``wait``, return
    once it has ended (or ``timeout_s`` passed).

    Raises:
        SpecError: the spec is invalid (nothing was queued).
    """
    from automl.service import check_job_file, check_tracking

    checked = check_job_file(job_file)
    check_tracking(checked.spec)
    service = service or connect()
    job = service.submit(checked)
    return wait_for(job.id, timeout_s=timeout_s, service=service) if wait else job


def wait_for(job_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0, service: JobService | None = None) -> JobView:
    """The job once it has ended, or as it is when ``timeout_s`` has passed."""
    service = service or connect()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    job = service.get(job_id)
    while not job.is_final and (deadline is None or time.monotonic() < deadline):
        time.sleep(poll_s)
        job = service.get(job.id)
    return job


def status(job_id: str, *, events: int = 10, service: JobService | None = None) -> JobStatus:
    """A job with its snapshot and latest events (``automl status``)."""
    service = service or connect()
    job = service.get(job_id)
    return JobStatus(job, service.snapshot(job), service.events(job.id, limit=events))


def jobs(*, state: str | list[str] | None = None, limit: int = 50, service: JobService | None = None) -> list[JobView]:
    """Jobs, newest first (``automl list``); through a server, only the caller's (an admin's: all)."""
    states = (state,) if isinstance(state, str) else tuple(state) if state else None
    return (service or connect()).list(states=states, limit=limit)


def cancel(job_id: str, *, service: JobService | None = None) -> JobView:
    """Cancel a job (``automl cancel``)."""
    return (service or connect()).cancel(job_id)


def best(job_id: str, *, service: JobService | None = None) -> dict[str, Any]:
    """A job's best trial: value, hyperparameters, MLflow run and model URI (``automl best --json``)."""
    service = service or connect()
    return service.best(service.get(job_id))
