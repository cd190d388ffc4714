"""Submitting a job: its file checked once into a plan, the tracking server asked, the job queued.

What must stay true: a job that fails a check writes nothing (the error names the field); the
queue stores the plan checked here, which the runner runs without checking the spec again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl.engine.plan import SearchPlan
    from automl.settings import Settings
    from automl.shipping.code import CodePackage
    from automl.shipping.data import DataFile
    from automl.spec import JobSpec
    from automl.store import JobStore, JobView


def open_job_store(settings: Settings) -> JobStore:
    """The job store at ``settings.db_url``, migrated to the latest schema.

    Raises:
        StoreUnavailable: the database cannot be reached (the message names it, password hidden).
    """
    from automl.settings import prepare
    from automl.store import open_store

    if settings.db_url.startswith("sqlite"):
        prepare(settings)
    return open_store(settings.db_url)


@dataclass(frozen=True)
class CheckedJob:
    """A job spec that passed every check, with the folder its relative paths are read from, the
    plan it was checked into (what the queue stores, so a runner does not check it again), and
    what travels with it: its code package and its data file."""

    spec: JobSpec
    base_dir: Path
    plan: SearchPlan | None = None
    code: CodePackage | None = None
    data: DataFile | None = None


def check_job_file(spec_path: str | Path) -> CheckedJob:
    """Validate the spec at ``spec_path`` fully, writing nothing.

    Raises:
        SpecError: naming the field that is wrong.
    """
    from automl.engine.plan import plan_search
    from automl.errors import SpecError
    from automl.shipping.code import job_code
    from automl.shipping.data import read_data_file
    from automl.spec import load_spec

    path = Path(spec_path)
    spec = load_spec(path)
    base_dir = path.resolve().parent
    try:
        data = read_data_file(spec, base_dir)
        plan = plan_search(spec, base_dir=base_dir, data_path=data.local_path if data is not None else None)
        code = job_code(spec, base_dir, plan.trial_plan.objective if callable(plan.trial_plan.objective) else None)
    except SpecError as exc:
        raise SpecError(exc.problems, source=exc.source or str(path)) from None
    # The queued spec names its metric(s) and direction(s), defaults resolved, so readers need no
    # trainer; every objective of a multi-objective job stays. It is the plan's spec: a sampler or
    # scheduler given as auto is the one the plan chose (plan.strategy says so, and why).
    resolved: dict[str, Any]
    if plan.multi_objective:
        resolved = {"metric": list(plan.metrics), "mode": list(plan.modes)}
    else:
        resolved = {"metric": plan.metric, "mode": plan.mode}
    spec = plan.spec.model_copy(update=resolved)
    return CheckedJob(spec, base_dir, dataclasses.replace(plan, spec=spec), code, data)


def job_settings(settings: Settings, spec: JobSpec) -> Settings:
    """The settings a job runs with: ``settings``, tracked where the spec's own
    ``tracking.tracking_uri`` says when it names a store (it overrides ``MLFLOW_TRACKING_URI``)."""
    from automl.settings import resolve_settings

    uri = spec.tracking.tracking_uri
    if not uri or uri == settings.tracking_uri:
        return settings
    # Resolved again, not copied: a local store needs an artifact folder, a server keeps its own.
    return resolve_settings(
        db_url=settings.db_url, tracking_uri=uri, storage_url=settings.storage_url, ray_address=settings.ray_address
    )


def check_tracking(spec: JobSpec, settings: Settings | None = None) -> None:
    """Refuse a job whose MLflow tracking server does not answer, before it is queued.

    The spec's own ``tracking.tracking_uri`` is checked; without one, ``settings.tracking_uri``
    (``automl run`` knows it; ``submit`` does not: runners track where their own settings say).

    Raises:
        AutomlError: the server does not answer, naming it and the setting to fix.
    """
    from automl.netcheck import check_tracking_server

    if spec.tracking.tracking_uri:
        check_tracking_server(spec.tracking.tracking_uri, set_by="tracking.tracking_uri in the job spec")
    elif settings is not None:
        check_tracking_server(settings.tracking_uri)


def enqueue(store: JobStore, job: CheckedJob, *, owner: str | None = None) -> JobView:
    """Put a checked job in the queue (an earlier job named for warm start becomes its study).

    Raises:
        SpecError: ``warm_start.from_job`` is not a job id, or names no job of this store.
    """
    return submit_form(store, job_form(job, store_travels(store, job)), owner=owner)


@dataclass(frozen=True)
class JobForm:
    """What the queue takes for a job, as it crosses from a client to ``automl server``: the plan
    it was checked into (with its spec) and the hashes of what travels with it, already stored."""

    plan_json: str
    base_dir: str | None = None
    code_sha256: str | None = None
    data_sha256: str | None = None
    data_source: str | None = None


def job_form(job: CheckedJob, travels: dict[str, str | None]) -> JobForm:
    """The form of a checked job whose code and data are stored under the hashes in ``travels``."""
    from automl.engine.plan import plan_to_json

    assert job.plan is not None, "check_job_file always plans"
    return JobForm(plan_to_json(job.plan), str(job.base_dir), **travels)


def job_travels(job: CheckedJob) -> dict[str, str | None]:
    """The hashes a checked job's code package and data file are stored under (not storing them)."""
    travels: dict[str, str | None] = {}
    if job.code is not None:
        travels["code_sha256"] = job.code.sha256
    if job.data is not None:
        travels.update(data_sha256=job.data.sha256, data_source=job.data.source)
    return travels


def submit_form(store: JobStore, form: JobForm, *, owner: str | None = None, sees_all: bool = True) -> JobView:
    """Queue the job a form describes, for ``owner``; ``sees_all=False`` (a user of ``automl server``
    who is not an admin) lets its warm start read only that owner's earlier jobs.

    The plan's spec is the job's spec; nothing is checked again but what a client cannot be
    trusted with: that the spec is a spec, that the blobs it names are stored, and whose study a
    warm start reads.

    Raises:
        SpecError: the plan is not one, its spec is invalid, or its warm start names no job (of the owner).
        InputError: a code package or data file it names is not stored.
    """
    import json

    from automl.engine.auto_strategy import AUTO
    from automl.errors import InputError, SpecError
    from automl.spec import parse_spec, spec_to_yaml
    from automl.store import InvalidJobId, JobNotFound

    try:
        record = json.loads(form.plan_json)
        raw_spec = record["spec"]
    except (ValueError, TypeError, KeyError, RecursionError):  # RecursionError: JSON nested past Python's stack
        raise SpecError("plan_json: not a plan written by `automl submit` (JSON with a 'spec')") from None
    spec = parse_spec(raw_spec, source="the submitted plan")
    for part in (spec.sampler, spec.scheduler):
        if part.name == AUTO:  # a plan names what auto chose, so every runner of the job runs the same
            kind = "sampler" if part is spec.sampler else "scheduler"
            raise SpecError(f"plan_json: its spec's {kind} is auto; a plan names the {kind} auto chose (plan_search resolves it)")
    scope = None if sees_all else owner
    if spec.warm_start.from_job is not None:
        try:
            earlier = store.get(spec.warm_start.from_job, owner=scope)
        except (InvalidJobId, JobNotFound) as exc:
            raise SpecError(f"warm_start.from_job: {exc}") from None
        spec = spec.model_copy(update={"warm_start": spec.warm_start.model_copy(update={"from_study": earlier.study_name})})
    elif (
        spec.warm_start.from_study is not None
        and scope is not None
        and not store.has_study(spec.warm_start.from_study, owner=scope)
    ):
        raise SpecError(
            f"warm_start.from_study: no study {spec.warm_start.from_study!r} of yours; name one of your jobs with from_job"
        )
    record["spec"] = spec.model_dump(mode="json")
    for what, sha in (("code package", form.code_sha256), ("data file", form.data_sha256)):
        in_bucket = what == "data file" and (form.data_source or "").startswith("s3://")
        if sha is not None and not in_bucket and not store.blobs.has(sha):
            raise InputError(f"the {what} {sha[:12]} is not in the job store: upload it before the job")
    travels = {"code_sha256": form.code_sha256, "data_sha256": form.data_sha256, "data_source": form.data_source}
    return store.submit(
        name=spec.name,
        spec_yaml=spec_to_yaml(spec),
        trials_total=spec.budget.trials,
        base_dir=form.base_dir,
        plan_json=json.dumps(record, sort_keys=True),
        travels={k: v for k, v in travels.items() if v is not None},
        owner=owner,
    )


def store_travels(store: JobStore, job: CheckedJob) -> dict[str, str | None]:
    """Put the job's code package and uploaded data file in the job store; return the job row's
    names for them (hashes, and where the data came from)."""
    travels: dict[str, str | None] = {}
    if job.code is not None:
        travels["code_sha256"] = store.blobs.put("code", job.code.content)
    if job.data is not None:
        if job.data.upload and store.blobs.put("data", job.data.content()) != job.data.sha256:
            from automl.errors import InputError

            raise InputError(f"{job.data.field}: {job.data.source} changed while the job was being submitted; submit it again")
        travels.update(data_sha256=job.data.sha256, data_source=job.data.source)
    return travels


def rerun(store: JobStore, job_id: str, *, owner: str | None = None, sees_all: bool = True) -> tuple[JobView, list[str]]:
    """Queue job ``job_id`` again as a new job: the same spec, plan, code package and data file.

    Returns:
        The new job, and one line per thing that is not, or may not be, the same (empty: nothing).

    Raises:
        JobNotFound, InvalidJobId: no such job.
        InputError: the job's code package or data file is no longer in the job store.
    """
    from automl.errors import InputError
    from automl.shipping.data import fetch_object

    earlier = store.get(job_id, owner=None if sees_all else owner)
    notes: list[str] = []
    travels: dict[str, str | None] = {
        "code_sha256": earlier.code_sha256,
        "data_sha256": earlier.data_sha256,
        "data_source": earlier.data_source,
    }
    for what, sha in (("code package", earlier.code_sha256), ("data file", earlier.data_sha256)):
        uploaded = what == "code package" or not (earlier.data_source or "").startswith("s3://")
        if sha is not None and uploaded and not store.blobs.has(sha):
            raise InputError(f"job {earlier.id}'s {what} {sha[:12]} is no longer in the job store; submit its spec again")
    if earlier.data_source and earlier.data_source.startswith("s3://") and earlier.data_sha256:
        now: DataFile = fetch_object("data", earlier.data_source)
        if now.sha256 != earlier.data_sha256:
            travels["data_sha256"] = now.sha256
            notes.append(
                f"data: {earlier.data_source} changed since job {earlier.id} (sha256 {earlier.data_sha256[:12]} then, "
                f"{now.sha256[:12]} now): this job trains on it as it is now"
            )
    ran_on = [e.message for e in store.events(earlier.id, limit=200) if e.kind == "resources"]
    notes.append(
        "cluster: "
        + (f"job {earlier.id} ran on {ran_on[-1]}; " if ran_on else "")
        + "this job runs on whatever cluster the runner that claims it has (its resources are checked then)"
    )
    job = store.submit(
        name=earlier.name,
        spec_yaml=earlier.spec_yaml,
        trials_total=earlier.trials_total,
        base_dir=earlier.base_dir,
        plan_json=earlier.plan_json,
        travels=travels,
        owner=owner if owner is not None else earlier.owner,
    )
    store.add_event(job.id, "rerun", f"a rerun of job {earlier.id}")
    return job, notes
