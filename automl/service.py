"""The job service's operations: submit, read back trials and the best result of a job.

The CLI's job commands are thin layers over these functions and :class:`~automl.store.JobStore`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.results import TrialSummary, top_trials
from automl.states import from_optuna

if TYPE_CHECKING:
    from automl.engine.plan import SearchPlan
    from automl.settings import Settings
    from automl.spec import JobSpec
    from automl.store import JobStore, JobView
    from automl.store.snapshot import JobSnapshot


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
    """A job spec that passed every check, with the folder its relative paths are read from and
    the plan it was checked into (what the queue stores, so a runner does not check it again)."""

    spec: JobSpec
    base_dir: Path
    plan: SearchPlan | None = None


def check_job_file(spec_path: str | Path) -> CheckedJob:
    """Validate the spec at ``spec_path`` fully, writing nothing.

    Raises:
        SpecError: naming the field that is wrong.
    """
    from automl.engine.plan import plan_search
    from automl.spec import load_spec

    path = Path(spec_path)
    spec = load_spec(path)
    plan = plan_search(spec, base_dir=path.resolve().parent)
    # The queued spec names its metric(s) and direction(s), defaults resolved, so readers need no
    # trainer; every objective of a multi-objective job stays.
    resolved: dict[str, Any]
    if plan.multi_objective:
        resolved = {"metric": list(plan.metrics), "mode": list(plan.modes)}
    else:
        resolved = {"metric": plan.metric, "mode": plan.mode}
    spec = spec.model_copy(update=resolved)
    return CheckedJob(spec, path.resolve().parent, dataclasses.replace(plan, spec=spec))


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


def enqueue(store: JobStore, job: CheckedJob) -> JobView:
    """Put a checked job in the queue (an earlier job named for warm start becomes its study).

    Raises:
        SpecError: ``warm_start.from_job`` is not a job id, or names no job of this store.
    """
    from automl.engine.plan import plan_to_json
    from automl.errors import SpecError
    from automl.spec import spec_to_yaml
    from automl.store import InvalidJobId, JobNotFound

    spec = job.spec
    if spec.warm_start.from_job is not None:
        try:
            earlier = store.get(spec.warm_start.from_job)
        except (InvalidJobId, JobNotFound) as exc:
            raise SpecError(f"warm_start.from_job: {exc}") from None
        spec = spec.model_copy(update={"warm_start": spec.warm_start.model_copy(update={"from_study": earlier.study_name})})
        job = CheckedJob(spec, job.base_dir, dataclasses.replace(job.plan, spec=spec) if job.plan is not None else None)
    return store.submit(
        name=job.spec.name,
        spec_yaml=spec_to_yaml(job.spec),
        trials_total=job.spec.budget.trials,
        base_dir=str(job.base_dir),
        plan_json=plan_to_json(job.plan) if job.plan is not None else None,
    )


def study_trials(settings: Settings, study_name: str) -> list[TrialSummary]:
    """Every trial of a job's Optuna study (empty if the study does not exist yet)."""
    import optuna

    from automl.engine.studies import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(settings.storage_url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    return [
        TrialSummary(
            number=t.number,
            state=from_optuna(t.state),
            value=t.values[0] if t.values else None,
            params=dict(t.params),
            fail_reason=t.user_attrs.get("fail_reason"),
            values=tuple(t.values) if t.values else None,
        )
        for t in storage.get_all_trials(study_id, deepcopy=False)
    ]


def study_directions(settings: Settings, study_name: str) -> list[str]:
    """``max``/``min`` per objective of the job's study (``["min"]`` before it exists)."""
    import optuna

    from automl.engine.studies import open_storage

    storage = open_storage(settings.storage_url)
    try:
        directions = storage.get_study_directions(storage.get_study_id_from_name(study_name))
    except KeyError:
        return ["min"]
    return ["max" if d == optuna.study.StudyDirection.MAXIMIZE else "min" for d in directions]


def snapshot_from_study(settings: Settings, study_name: str) -> JobSnapshot:
    """A job's snapshot computed from its Optuna study: every trial is read (slow at thousands).

    The runner calls it when it takes a job, ``status`` only for jobs written before the job
    row kept a snapshot.
    """
    from automl.store.snapshot import JobSnapshot

    return JobSnapshot.of_trials(study_trials(settings, study_name), study_directions(settings, study_name))


def job_snapshot(settings: Settings, job: JobView) -> JobSnapshot:
    """The job row's snapshot; for a job written before it had one, the study's."""
    return job.snapshot if job.snapshot is not None else snapshot_from_study(settings, job.study_name)


def best_of_job(settings: Settings, job: JobView) -> dict[str, Any]:
    """The best trial of a job (params, value, number), its MLflow run and its registered model."""
    import yaml

    from automl.spec import parse_spec
    from automl.spec_checks import resolve_metrics

    spec = parse_spec(yaml.safe_load(job.spec_yaml))
    metrics, spec_modes = resolve_metrics(spec, base_dir=Path(job.base_dir) if job.base_dir else None)
    snapshot = job_snapshot(settings, job)
    modes = list(snapshot.directions or spec_modes)
    front = list(snapshot.pareto) if len(modes) > 1 else []
    best = next(iter(top_trials(front or list(snapshot.top), modes[0], 1)), None)
    model_uri = best_run_id = None
    if job.mlflow_run_id:
        tags = _parent_tags(settings, spec.tracking.tracking_uri, job.mlflow_run_id)
        model_uri = tags.get("automl.best_model_uri")
        best_run_id = tags.get("automl.best_run_id")
    return {
        "job_id": job.id,
        "name": job.name,
        "state": job.state,
        "metric": metrics[0],
        "mode": modes[0],
        "metrics": list(metrics),
        "pareto_front": [
            {"trial": t.number, "values": dict(zip(metrics, t.values or (), strict=False)), "params": t.params} for t in front
        ],
        "best_value": None if best is None else best.value,
        "best_params": None if best is None else best.params,
        "best_trial": None if best is None else best.number,
        "best_run_id": best_run_id,
        "model_uri": model_uri,
        "mlflow_run_id": job.mlflow_run_id,
        "study_name": job.study_name,
    }


def _parent_tags(settings: Settings, spec_tracking_uri: str | None, run_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    uri = spec_tracking_uri or settings.tracking_uri
    try:
        return dict(MlflowClient(tracking_uri=uri).get_run(run_id).data.tags)
    except Exception:  # noqa: BLE001 - the best trial is still known from the study
        return {}
