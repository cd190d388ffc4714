"""The job store: jobs, their leases and events, in SQLAlchemy with Alembic migrations."""

from __future__ import annotations

from automl.store.jobs import EventView, InvalidJobId, JobNotFound, JobStore, JobView, StoreUnavailable, check_job_id, open_store
from automl.store.schema import FINAL_STATES, JOB_STATES

__all__ = [
    "FINAL_STATES", "JOB_STATES", "EventView", "InvalidJobId", "JobNotFound", "JobStore", "JobView", "StoreUnavailable",
    "check_job_id", "open_store",
]
