"""The job store: jobs, their leases and events, in SQLAlchemy with Alembic migrations."""

from __future__ import annotations

from automl.store.jobs import EventView, InvalidJobId, JobNotFound, JobStore, JobView, StoreUnavailable, check_job_id, open_store

__all__ = [
    "EventView",
    "InvalidJobId",
    "JobNotFound",
    "JobStore",
    "JobView",
    "StoreUnavailable",
    "check_job_id",
    "open_store",
]
