"""What the job store hands out and takes in, without SQL: the views of a job (made from its row)
and of an event, and the form of a job id.

What must stay true: a view is immutable, a copy of one row at one moment (read the job again
for news); :func:`check_job_id` refuses what cannot name one job before any query uses it, so a
job id reaching SQL is hex digits of a bounded length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from automl.errors import InputError
from automl.states import FINAL_JOB_STATES
from automl.store.snapshot import JobSnapshot

if TYPE_CHECKING:
    from automl.store.schema import Job


class InvalidJobId(InputError):
    """The text given as a job id (or id prefix) cannot name one job."""


# A job id is 12 lowercase hex digits (``uuid4().hex[:12]``, made by :meth:`JobStore.submit`).
JOB_ID_LENGTH = 12
# The shortest prefix taken for an id: shorter ones (the empty one matches every id) name
# several jobs too easily for a command that cancels.
MIN_JOB_ID_PREFIX = 4
_JOB_ID_TEXT = re.compile(f"[0-9a-f]{{1,{JOB_ID_LENGTH}}}")
JOB_ID_FORM = f"a job id is {JOB_ID_LENGTH} hex digits (0-9, a-f), like 3cb2283bb2eb"


def check_job_id(text: str) -> str:
    """``text`` as a job id or id prefix (lower case), checked before any query uses it.

    Raises:
        InvalidJobId: ``text`` is not hex digits, is longer than an id, or is shorter than
            :data:`MIN_JOB_ID_PREFIX` characters.
    """
    given = text.lower()
    if len(given) < MIN_JOB_ID_PREFIX and _JOB_ID_TEXT.fullmatch(given or "0"):
        raise InvalidJobId(
            f"job id prefix {text!r} is too short: give at least {MIN_JOB_ID_PREFIX} characters of the id "
            f"({JOB_ID_FORM}; see `automl list`)"
        )
    if not _JOB_ID_TEXT.fullmatch(given):
        shown = repr(text) if len(text) <= 24 else f"{text[:16]!r}… ({len(text)} characters)"
        raise InvalidJobId(
            f"{shown} is not a job id: {JOB_ID_FORM}; give one, or a unique prefix of at least "
            f"{MIN_JOB_ID_PREFIX} of its characters (see `automl list`)"
        )
    return given


@dataclass(frozen=True)
class JobView:
    """A job as the store saw it at one moment (immutable; read it again for news)."""

    id: str
    name: str
    state: str
    spec_yaml: str
    base_dir: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    runner_id: str | None
    lease_expires_at: datetime | None
    attempts: int
    cancel_requested: bool
    study_name: str
    experiment_id: str | None
    mlflow_run_id: str | None
    trials_total: int
    trials_finished: int
    best_value: float | None
    error: str | None
    version: int
    snapshot: JobSnapshot | None = None  # None: written before migration 0002; read the study
    plan_json: str | None = None  # the checked plan (engine.plan.plan_to_json); None: written before 0003
    code_sha256: str | None = None  # the job's code package (automl.shipping.code); None: it ships none
    data_sha256: str | None = None  # the job's data file, uploaded or in a bucket; None: none named
    data_source: str | None = None  # where the data file came from: the submitter's path or an s3:// URI
    owner: str | None = None  # who submitted it through `automl server`; None: the embedded store

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_JOB_STATES


@dataclass(frozen=True)
class EventView:
    """One event of a job."""

    job_id: str
    at: datetime
    kind: str
    message: str
    runner_id: str | None


def job_view(row: Job) -> JobView:
    """The view of a job's row: its columns, and its progress snapshot decoded."""
    fields = {name: getattr(row, name) for name in JobView.__dataclass_fields__ if name != "snapshot"}
    return JobView(**fields, snapshot=JobSnapshot.from_json(row.snapshot))
