"""What a front door may do with jobs: :class:`JobService`, and :class:`LocalJobService` over the job store.

The CLI and the Python API talk to a :class:`JobService`: this one when no server is named (the
embedded default), :class:`automl.client.RemoteJobService` when ``AUTOML_SERVER`` is set. ``automl
server`` answers each request with a :class:`LocalJobService` made for the user who sent it.

What must stay true: ownership is enforced here and only here. A service for a user who does not
see all jobs (``sees_all=False``) finds none of another user's jobs, as if they did not exist
(``JobNotFound``, never "forbidden": no existence leak), and queues jobs under that user's name.
Both implementations raise the same errors for the same input, so the CLI prints the same line and
exits with the same code either way.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from automl.service.submit import CheckedJob, JobForm
    from automl.settings import Settings
    from automl.store import EventView, JobStore, JobView
    from automl.store.snapshot import JobSnapshot


class JobService(Protocol):
    """Jobs as one user may see and steer them."""

    @property
    def where(self) -> str:
        """Where the jobs are, for messages: the job store's URL (password hidden) or the server's."""
        ...

    def submit(self, job: CheckedJob) -> JobView:
        """Queue a checked job (its code package and data file go with it)."""
        ...

    def rerun(self, job_id: str) -> tuple[JobView, list[str]]:
        """Queue a job again as a new job; the notes say what may differ."""
        ...

    def get(self, job_id: str) -> JobView: ...

    def list(self, *, states: tuple[str, ...] | None = None, limit: int = 50) -> list[JobView]: ...

    def events(self, job_id: str, *, limit: int = 20) -> builtins.list[EventView]: ...

    def snapshot(self, job: JobView) -> JobSnapshot:
        """The job's trial counts, top trials and Pareto front."""
        ...

    def best(self, job: JobView) -> dict[str, Any]:
        """The best trial, its MLflow run and registered model (:func:`automl.service.best_of_job`)."""
        ...

    def cancel(self, job_id: str) -> JobView: ...


@dataclass
class LocalJobService:
    """The job service over a job store this process opens itself.

    ``user``: whose jobs it queues (``None``: nobody's, the embedded default); ``sees_all``: whether
    it sees and cancels every job (the embedded default and admins) or only ``user``'s.
    """

    store: JobStore
    settings: Settings
    user: str | None = None
    sees_all: bool = True

    @property
    def where(self) -> str:
        return self.store.url

    @property
    def _scope(self) -> str | None:
        return None if self.sees_all else self.user

    def submit(self, job: CheckedJob) -> JobView:
        return self.submit_form(self.form_of(job))

    def form_of(self, job: CheckedJob) -> JobForm:
        from automl.service.submit import job_form, store_travels

        return job_form(job, store_travels(self.store, job))

    def submit_form(self, form: JobForm) -> JobView:
        """Queue a job whose plan and stored blobs a client sent (``automl server``'s submit)."""
        from automl.service.submit import submit_form

        return submit_form(self.store, form, owner=self.user, sees_all=self.sees_all)

    def rerun(self, job_id: str) -> tuple[JobView, list[str]]:
        from automl.service.submit import rerun

        return rerun(self.store, job_id, owner=self.user, sees_all=self.sees_all)

    def get(self, job_id: str) -> JobView:
        return self.store.get(job_id, owner=self._scope)

    def list(self, *, states: tuple[str, ...] | None = None, limit: int = 50) -> list[JobView]:
        return self.store.list(states=states, limit=limit, owner=self._scope)

    def events(self, job_id: str, *, limit: int = 20) -> builtins.list[EventView]:
        return self.store.events(self.get(job_id).id, limit=limit)

    def snapshot(self, job: JobView) -> JobSnapshot:
        from automl.service.job_results import job_snapshot

        return job_snapshot(self.settings, job)

    def best(self, job: JobView) -> dict[str, Any]:
        from automl.service.job_results import best_of_job

        return best_of_job(self.settings, job)

    def cancel(self, job_id: str) -> JobView:
        return self.store.cancel(job_id, owner=self._scope)
