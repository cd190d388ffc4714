"""The job store's tables, as SQLAlchemy models. Created and changed only by Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The newest Alembic revision under migrations/versions (a test keeps the two equal): a store
# already there opens without loading Alembic at all, which keeps `automl status` quick.
HEAD_REVISION = "0005"


class Base(DeclarativeBase):
    pass


class Job(Base):
    """One submitted search job: its spec, where it is in its life, and who holds it."""

    __tablename__ = "automl_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    spec_yaml: Mapped[str] = mapped_column(Text)
    base_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # an automl.states.JobState value, stored as the plain string
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    runner_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    study_name: Mapped[str] = mapped_column(String(128))
    experiment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trials_total: Mapped[int] = mapped_column(Integer)
    trials_finished: Mapped[int] = mapped_column(Integer, default=0)
    best_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # JSON of automl.store.snapshot.JobSnapshot: counts, top trials, Pareto front (migration 0002).
    # NULL only for jobs written before that migration: `status` then reads the Optuna study.
    snapshot: Mapped[str | None] = mapped_column(Text, nullable=True)
    # JSON of the job's checked plan (automl.engine.plan.plan_to_json; migration 0003). NULL for
    # jobs written before it: a runner then plans them from spec_yaml.
    plan_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What travels with the job (migration 0004): the sha256 of its code package and of its data
    # file in automl_blobs (a data file in a bucket is not copied: data_source is its URI). NULL: nothing.
    code_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data_source: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Bumped by every change of owner or state: a claim only succeeds on the version it read.
    version: Mapped[int] = mapped_column(Integer, default=0)
    # The user who submitted it through `automl server` (migration 0005); NULL: the embedded store.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Its webhooks were queued (automl_deliveries) after it finished (migration 0005).
    notified: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_automl_jobs_state_created", "state", "created_at"),
        Index("ix_automl_jobs_owner_created", "owner", "created_at"),
        # Partial: only the finished jobs whose webhooks are not queued yet (the notifiers' poll).
        Index(
            "ix_automl_jobs_unnotified",
            "state",
            postgresql_where=text("notified = false"),
            sqlite_where=text("notified = 0"),
        ),
    )


class JobEvent(Base):
    """Something that happened to a job: a state change, a failed trial, a reclaimed lease."""

    __tablename__ = "automl_job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("automl_jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    runner_id: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Blob(Base):
    """A code package or data file, stored once by the sha256 of its bytes (migration 0004)."""

    __tablename__ = "automl_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "code" or "data"
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class User(Base):
    """Someone who may use `automl server` (migration 0005). ``role``: ``user`` or ``admin``."""

    __tablename__ = "automl_users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class Token(Base):
    """A user's API token: only the sha256 of its secret is kept (migration 0005)."""

    __tablename__ = "automl_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64), ForeignKey("automl_users.name", ondelete="CASCADE"), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Delivery(Base):
    """One webhook call for a finished job, retried with backoff until it is answered 2xx (migration 0005)."""

    __tablename__ = "automl_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("automl_jobs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, fixed when queued: every retry sends the same bytes
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    next_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)  # NULL: done or given up
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    gave_up_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


metadata = Base.metadata
