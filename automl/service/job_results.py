"""Reading a job back: its study's trials, its progress snapshot and its best result.

What must stay true: ``automl status`` reads the job row's snapshot, never the whole study, for
any job written since the row kept one; ``best_of_job`` agrees with the study on the best trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.results import TrialSummary, top_trials
from automl.states import from_optuna

if TYPE_CHECKING:
    from automl.settings import Settings
    from automl.store import JobView
    from automl.store.snapshot import JobSnapshot


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

    raw = yaml.safe_load(job.spec_yaml) or {}
    metrics, spec_modes = _queued_metrics(raw)
    if not metrics:  # a job queued before specs were stored with their metrics resolved
        from automl.spec import parse_spec
        from automl.spec.checks import resolve_metrics

        resolved = resolve_metrics(parse_spec(raw), base_dir=Path(job.base_dir) if job.base_dir else None)
        metrics, spec_modes = list(resolved[0]), list(resolved[1])
    snapshot = job_snapshot(settings, job)
    modes = list(snapshot.directions or spec_modes)
    front = list(snapshot.pareto) if len(modes) > 1 else []
    best = next(iter(top_trials(front or list(snapshot.top), modes[0], 1)), None)
    model_uri, best_run_id = snapshot.model_uri, snapshot.best_run_id
    if job.mlflow_run_id and not snapshot.concluded:  # still running, or ended before snapshots kept these
        tags = _parent_tags(settings, (raw.get("tracking") or {}).get("tracking_uri"), job.mlflow_run_id)
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


def _queued_metrics(raw: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The metric(s) and mode(s) a queued spec names (resolved at submit); empty if it names none."""
    metric, mode = raw.get("metric"), raw.get("mode")
    if not metric or not mode:
        return [], []
    metrics = [str(m) for m in metric] if isinstance(metric, list) else [str(metric)]
    modes = [str(m) for m in mode] if isinstance(mode, list) else [str(mode)]
    return metrics, modes


def _parent_tags(settings: Settings, spec_tracking_uri: str | None, run_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    uri = spec_tracking_uri or settings.tracking_uri
    try:
        return dict(MlflowClient(tracking_uri=uri).get_run(run_id).data.tags)
    except Exception:  # noqa: BLE001 - the best trial is still known from the study
        return {}
