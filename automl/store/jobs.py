"""The job store: the queue of search jobs, their leases and events, on SQLite or PostgreSQL.

It is the only module that issues SQL for its tables. Every change of a job's owner or state
is one conditional UPDATE (compare-and-swap on the job's ``version`` and state), so two
runners never hold the same job, on either database, without table locks. What it hands out
(the views, the form of a job id) is :mod:`automl.store.records`; the schema's migrations are
run by :mod:`automl.store.migrate`.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import CursorResult, Engine, Executable, create_engine, func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from automl.errors import AutomlError, is_transient
from automl.retry import retrying
from automl.settings import redact_url
from automl.sqlite import set_up_connections
from automl.states import FINAL_JOB_STATES, JobState
from automl.store.blobs import BlobStore
from automl.store.deliveries import DeliveryStore
from automl.store.migrate import at_head, upgrade
from automl.store.records import EventView, JobView, check_job_id, job_view
from automl.store.schema import Job, JobEvent
from automl.store.snapshot import JobSnapshot
from automl.store.users import UserStore

logger = logging.getLogger(__name__)
T = TypeVar("T")
# How long a store operation keeps retrying a locked or restarting database (a PostgreSQL restart
# takes seconds); opening the store retries only briefly, so a wrong URL fails fast.
RETRY_WINDOW_S = 30.0
OPEN_RETRY_WINDOW_S = 3.0


class JobNotFound(AutomlError):
    """No job has this id (or id prefix)."""


class StoreUnavailable(AutomlError):
    """The job database cannot be reached."""


def _changed(session: Session, statement: Executable) -> int:
    """How many rows an UPDATE changed (the compare-and-set checks of claim, lease and state moves)."""
    result = session.execute(statement)
    # Session.execute is typed to return a Result; for an UPDATE without RETURNING it is a CursorResult.
    assert isinstance(result, CursorResult)
    return result.rowcount


def utcnow() -> datetime:
    """Naive UTC: stored the same way on SQLite and PostgreSQL. Runners' clocks are assumed in sync (NTP)."""
    return datetime.now(UTC).replace(tzinfo=None)


class JobStore:
    """Jobs and events in one database. Open with :func:`open_store`, which migrates it to head."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = redact_url(engine.url.render_as_string(hide_password=False))
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.blobs = BlobStore(engine, self._retrying)
        self.users = UserStore(engine, self._retrying)
        self.deliveries = DeliveryStore(engine, self._retrying)

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _retrying(self, work: Callable[[], T], *, window_s: float = RETRY_WINDOW_S) -> T:
        """Run ``work``, retrying with backoff (0.1 s doubling to 2 s) while the database is briefly
        locked or restarting, for up to ``window_s`` seconds; then raise :class:`StoreUnavailable`."""
        try:
            return retrying(
                work,
                retryable=lambda exc: isinstance(exc, DBAPIError) and is_transient(exc),
                window_s=window_s,
                first_pause_s=0.1,
                max_pause_s=2.0,
                what="the job store",
                logger=logger,
                level=logging.INFO,
            )
        except DBAPIError as exc:
            raise StoreUnavailable(f"the job database {self.url} is unavailable: {_short(exc)}") from exc

    # -- submitting and reading -----------------------------------------------------------

    def submit(
        self,
        *,
        name: str,
        spec_yaml: str,
        trials_total: int,
        base_dir: str | None = None,
        plan_json: str | None = None,
        travels: dict[str, str | None] | None = None,
        owner: str | None = None,
    ) -> JobView:
        """Enqueue a job; return it with its new id. ``plan_json``: what its spec was checked into;
        ``travels``: ``code_sha256``, ``data_sha256``, ``data_source`` (stored in :attr:`blobs` first);
        ``owner``: the user who submitted it through ``automl server``."""
        job_id = uuid.uuid4().hex[:12]
        now = utcnow()

        def work() -> JobView:
            with self._session() as session:
                job = Job(
                    id=job_id,
                    name=name,
                    spec_yaml=spec_yaml,
                    base_dir=base_dir,
                    state=JobState.QUEUED,
                    created_at=now,
                    updated_at=now,
                    attempts=0,
                    cancel_requested=False,
                    study_name=f"{name}-{job_id}",
                    trials_total=trials_total,
                    trials_finished=0,
                    version=0,
                    snapshot=JobSnapshot().to_json(),
                    plan_json=plan_json,
                    owner=owner,
                    notified=False,
                    **(travels or {}),
                )
                session.add(job)
                session.add(JobEvent(job_id=job_id, at=now, kind="submitted", message=f"queued with {trials_total} trials"))
                session.flush()
                return job_view(job)

        return self._retrying(work)

    def get(self, job_id: str, *, owner: str | None = None) -> JobView:
        """The job with this id, or the only one whose id starts with it; with ``owner``, only
        that user's jobs are looked at (another's job is not found, as if it did not exist).

        Raises:
            InvalidJobId: ``job_id`` cannot name one job (see :func:`check_job_id`); nothing was queried.
            JobNotFound: none, or several, match.
        """
        job_id = check_job_id(job_id)

        def work() -> JobView:
            with self._session() as session:
                job = session.get(Job, job_id)
                if job is not None and owner is not None and job.owner != owner:
                    job = None
                if job is None:
                    query = select(Job).where(Job.id.startswith(job_id, autoescape=True))
                    if owner is not None:
                        query = query.where(Job.owner == owner)
                    matches = session.scalars(query.limit(2)).all()
                    if len(matches) != 1:
                        what = "no job" if not matches else "several jobs"
                        raise JobNotFound(f"{what} with id {job_id!r}; see `automl list`")
                    job = matches[0]
                return job_view(job)

        return self._retrying(work)

    def list(self, *, states: tuple[str, ...] | None = None, limit: int = 50, owner: str | None = None) -> list[JobView]:
        """The newest jobs first, optionally only in ``states``, only ``owner``'s."""

        def work() -> list[JobView]:
            with self._session() as session:
                query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
                if states:
                    query = query.where(Job.state.in_(states))
                if owner is not None:
                    query = query.where(Job.owner == owner)
                return [job_view(job) for job in session.scalars(query)]

        return self._retrying(work)

    def has_study(self, study_name: str, *, owner: str | None = None) -> bool:
        """Whether a job (of ``owner``, if given) has the Optuna study ``study_name``."""

        def work() -> bool:
            with self._session() as session:
                query = select(Job.id).where(Job.study_name == study_name)
                if owner is not None:
                    query = query.where(Job.owner == owner)
                return session.scalar(query.limit(1)) is not None

        return self._retrying(work)

    def study_names(self, *, owner: str | None = None) -> set[str]:
        """The Optuna studies of the jobs (of ``owner``, if given): what the studies' dashboard may show them."""

        def work() -> set[str]:
            with self._session() as session:
                query = select(Job.study_name).distinct()
                if owner is not None:
                    query = query.where(Job.owner == owner)
                return set(session.scalars(query))

        return self._retrying(work)

    def events(self, job_id: str, *, limit: int = 20) -> builtins.list[EventView]:  # list: the method above
        """The job's latest events, oldest first."""

        def work() -> list[EventView]:
            with self._session() as session:
                rows = session.scalars(
                    select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc()).limit(limit)
                ).all()
                return [EventView(e.job_id, e.at, e.kind, e.message, e.runner_id) for e in reversed(rows)]

        return self._retrying(work)

    def add_event(self, job_id: str, kind: str, message: str, *, runner_id: str | None = None) -> None:
        """Record something that happened to a job."""

        def work() -> None:
            with self._session() as session:
                session.add(JobEvent(job_id=job_id, at=utcnow(), kind=kind, message=message[:4000], runner_id=runner_id))

        self._retrying(work)

    # -- the queue ------------------------------------------------------------------------

    def claim(self, runner_id: str, *, lease_s: float, job_id: str | None = None) -> JobView | None:
        """Take the oldest queued job, or one whose runner's lease expired; ``None`` if there is none.

        The claim is one conditional UPDATE on the version and state that were read: of two
        runners racing for a job, exactly one wins.
        """

        def work() -> JobView | None:
            # Other runners may win every candidate we read; read again until the queue is empty.
            for _ in range(20):
                now = utcnow()
                claimable = or_(Job.state == JobState.QUEUED, (Job.state == JobState.RUNNING) & (Job.lease_expires_at < now))
                with self._session() as session:
                    query = select(Job.id, Job.version, Job.state, Job.runner_id).where(claimable)
                    if job_id is not None:
                        query = query.where(Job.id == job_id)
                    candidates = session.execute(query.order_by(Job.created_at, Job.id).limit(8)).all()
                if not candidates:
                    return None
                for candidate in candidates:
                    claimed = self._try_claim(candidate, runner_id, now, lease_s, claimable)
                    if claimed is not None:
                        return claimed
            return None

        return self._retrying(work)

    def _try_claim(self, candidate: Any, runner_id: str, now: datetime, lease_s: float, claimable: Any) -> JobView | None:
        with self._session() as session:
            won = _changed(
                session,
                update(Job)
                .where(Job.id == candidate.id, Job.version == candidate.version, claimable)
                .values(
                    state=JobState.RUNNING,
                    runner_id=runner_id,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    attempts=Job.attempts + 1,
                    started_at=func.coalesce(Job.started_at, now),
                    updated_at=now,
                    version=Job.version + 1,
                ),
            )
            if won != 1:
                return None
            if candidate.state == JobState.RUNNING:
                kind, message = "reclaimed", f"lease of runner {candidate.runner_id} expired; reclaimed to resume"
            else:
                kind, message = "claimed", "claimed by a runner"
            session.add(JobEvent(job_id=candidate.id, at=now, kind=kind, message=message, runner_id=runner_id))
            return job_view(session.get_one(Job, candidate.id))

    def renew(self, job_id: str, runner_id: str, *, lease_s: float) -> bool:
        """Extend the lease of a job this runner holds; ``False`` if it no longer holds it."""

        def work() -> bool:
            now = utcnow()
            with self._session() as session:
                return (
                    _changed(
                        session,
                        update(Job)
                        .where(Job.id == job_id, Job.runner_id == runner_id, Job.state == JobState.RUNNING)
                        .values(lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now),
                    )
                    == 1
                )

        return self._retrying(work)

    def record_tracking(self, job_id: str, runner_id: str, *, experiment_id: str | None, run_id: str | None) -> None:
        """Remember where MLflow records the job (so a resumed job reopens the same parent run)."""
        self._update_held(job_id, runner_id, experiment_id=experiment_id, mlflow_run_id=run_id)

    def record_progress(
        self, job_id: str, runner_id: str, *, finished: int, best_value: float | None, snapshot: JobSnapshot | None = None
    ) -> None:
        """Store how many trials have finished and the best value so far, and with ``snapshot``
        the counts, top trials and Pareto front (for ``status``), in one UPDATE."""
        values: dict[str, Any] = {"trials_finished": finished, "best_value": best_value}
        if snapshot is not None:
            values["snapshot"] = snapshot.to_json()
        self._update_held(job_id, runner_id, **values)

    def record_snapshot(self, job_id: str, runner_id: str, snapshot: JobSnapshot) -> None:
        """Replace the job's progress snapshot (a runner read it from the study)."""
        self._update_held(job_id, runner_id, snapshot=snapshot.to_json())

    def _update_held(self, job_id: str, runner_id: str, **values: Any) -> None:
        def work() -> None:
            with self._session() as session:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.runner_id == runner_id, Job.state == JobState.RUNNING)
                    .values(updated_at=utcnow(), **values)
                )

        self._retrying(work)

    def finish(self, job_id: str, runner_id: str, state: str, *, message: str, error: str | None = None) -> bool:
        """Move a held job to a final state; ``False`` if this runner no longer holds it."""
        if state not in FINAL_JOB_STATES:
            raise ValueError(f"not a final state: {state!r}")
        return self._transition(
            job_id,
            runner_id,
            kind=state,
            message=message,
            values={"state": state, "finished_at": utcnow(), "lease_expires_at": None, "error": error},
        )

    def release(self, job_id: str, runner_id: str, *, message: str) -> bool:
        """Put a held job back in the queue (its runner is stopping); the next runner resumes it."""
        return self._transition(
            job_id,
            runner_id,
            kind="released",
            message=message,
            values={"state": JobState.QUEUED, "runner_id": None, "lease_expires_at": None},
        )

    def _transition(self, job_id: str, runner_id: str, *, kind: str, message: str, values: dict[str, Any]) -> bool:
        def work() -> bool:
            now = utcnow()
            with self._session() as session:
                moved = _changed(
                    session,
                    update(Job)
                    .where(Job.id == job_id, Job.runner_id == runner_id, Job.state == JobState.RUNNING)
                    .values(updated_at=now, version=Job.version + 1, **values),
                )
                if moved == 1:
                    session.add(JobEvent(job_id=job_id, at=now, kind=kind, message=message[:4000], runner_id=runner_id))
                return moved == 1

        return self._retrying(work)

    def cancel(self, job_id: str, *, owner: str | None = None) -> JobView:
        """Cancel a job: a queued one leaves the queue now; a running one is stopped by its runner.
        With ``owner``, only that user's job (another's is not found).

        Raises:
            JobNotFound: no such job.
            AutomlError: the job already finished.
        """
        job = self.get(job_id, owner=owner)

        def work() -> JobView:
            now = utcnow()
            with self._session() as session:
                if job.state == JobState.QUEUED:
                    moved = _changed(
                        session,
                        update(Job)
                        .where(Job.id == job.id, Job.state == JobState.QUEUED)
                        .values(state=JobState.CANCELLED, finished_at=now, updated_at=now, version=Job.version + 1),
                    )
                    if moved == 1:
                        session.add(JobEvent(job_id=job.id, at=now, kind=JobState.CANCELLED, message="cancelled while queued"))
                        return job_view(session.get_one(Job, job.id))
                moved = _changed(
                    session,
                    update(Job)
                    .where(Job.id == job.id, Job.state.in_((JobState.QUEUED, JobState.RUNNING)))
                    .values(cancel_requested=True, updated_at=now),
                )
                current = session.get_one(Job, job.id)
                if moved != 1:
                    raise AutomlError(f"job {job.id} already {current.state}; nothing to cancel")
                session.add(JobEvent(job_id=job.id, at=now, kind="cancel_requested", message="cancel requested"))
                return job_view(current)

        return self._retrying(work)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel this job."""

        def work() -> bool:
            with self._session() as session:
                return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

        return self._retrying(work)


def open_store(url: str, *, migrate: bool = True) -> JobStore:
    """Connect to the job database at ``url`` and bring its schema to the latest migration.

    Raises:
        StoreUnavailable: the database cannot be reached, naming the URL (password hidden).
    """
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        # WAL lets readers (status, list) work while a runner writes; the busy timeout makes
        # concurrent writers wait their turn instead of failing.
        set_up_connections(engine, busy_timeout_ms=30000, foreign_keys=True)
    store = JobStore(engine)
    if migrate:
        try:
            store._retrying(lambda: None if at_head(engine) else upgrade(engine), window_s=OPEN_RETRY_WINDOW_S)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"cannot prepare the job database {store.url}: {_short(exc)}") from exc
    return store


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
