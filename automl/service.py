"""The job service's operations: submit, read back trials and the best result of a job.

The CLI's job commands are thin layers over these functions and :class:`~automl.store.JobStore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.results import TrialSummary

if TYPE_CHECKING:
    from automl.settings import Settings
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
    """A job spec that passed every check, with the folder its relative paths are read from."""

    spec: JobSpec
    base_dir: Path


def check_job_file(spec_path: str | Path) -> CheckedJob:
    """Validate the spec at ``spec_path`` fully, writing nothing.

    Raises:
        SpecError: naming the field that is wrong.
    """
    from automl.engine import plan_search
    from automl.spec import load_spec

    path = Path(spec_path)
    spec = load_spec(path)
    plan = plan_search(spec, base_dir=path.resolve().parent)
    # The queued spec names its metric and direction, defaults resolved, so readers need no trainer.
    return CheckedJob(spec.model_copy(update={"metric": plan.metric, "mode": plan.mode}), path.resolve().parent)


def enqueue(store: JobStore, job: CheckedJob) -> JobView:
    """Put a checked job in the queue."""
    from automl.spec import spec_to_yaml

    return store.submit(
        name=job.spec.name,
        spec_yaml=spec_to_yaml(job.spec),
        trials_total=job.spec.budget.trials,
        base_dir=str(job.base_dir),
    )


def study_trials(settings: Settings, study_name: str) -> list[TrialSummary]:
    """Every trial of a job's Optuna study (empty if the study does not exist yet)."""
    import optuna

    from automl.engine import _optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _optuna_storage(settings.storage_url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    return [
        TrialSummary(
            number=t.number,
            state=t.state.name,
            value=t.value,
            params=dict(t.params),
            fail_reason=t.user_attrs.get("fail_reason"),
        )
        for t in storage.get_all_trials(study_id, deepcopy=False)
    ]


def study_direction(settings: Settings, study_name: str) -> str:
    """``max`` or ``min``: which way the job's study optimises."""
    import optuna

    from automl.engine import _optuna_storage

    storage = _optuna_storage(settings.storage_url)
    try:
        directions = storage.get_study_directions(storage.get_study_id_from_name(study_name))
    except KeyError:
        return "min"
    return "max" if directions[0] == optuna.study.StudyDirection.MAXIMIZE else "min"


def top_trials(trials: list[TrialSummary], mode: str, n: int = 5) -> list[TrialSummary]:
    """The ``n`` best COMPLETE trials, best first."""
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    return sorted(done, key=lambda t: t.value, reverse=mode == "max")[:n]  # type: ignore[arg-type,return-value]


def best_of_job(settings: Settings, job: JobView) -> dict[str, Any]:
    """The best trial of a job (params, value, number), its MLflow run and its registered model."""
    import yaml

    from automl.spec import parse_spec, resolve_metric

    spec = parse_spec(yaml.safe_load(job.spec_yaml))
    metric, _ = resolve_metric(spec, base_dir=Path(job.base_dir) if job.base_dir else None)
    mode = study_direction(settings, job.study_name)
    trials = study_trials(settings, job.study_name)
    best = next(iter(top_trials(trials, mode, 1)), None)
    model_uri = best_run_id = None
    if job.mlflow_run_id:
        tags = _parent_tags(settings, spec.tracking.tracking_uri, job.mlflow_run_id)
        model_uri = tags.get("automl.best_model_uri")
        best_run_id = tags.get("automl.best_run_id")
    return {
        "job_id": job.id,
        "name": job.name,
        "state": job.state,
        "metric": metric,
        "mode": mode,
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
