"""The job store: jobs, their leases and events, in SQLAlchemy with Alembic migrations.

The queue and its SQL are :mod:`~automl.store.jobs`; what it hands out, :mod:`~automl.store.records`;
the schema, :mod:`~automl.store.schema`, migrated by :mod:`~automl.store.migrate`; the progress
snapshot kept with a job, :mod:`~automl.store.snapshot`.
"""

from __future__ import annotations

from automl.store.jobs import JobNotFound, JobStore, StoreUnavailable, open_store
from automl.store.records import EventView, InvalidJobId, JobView, check_job_id

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
