"""What the job's MLflow parent run records: its params and tags at the start, its summary and
best model at the end, and the :class:`~automl.results.SearchResult` read back from the study.

What must stay true: the result, the study and the parent run agree on every trial's state and
on the best trial (read from the study, after every write is durable).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.results import SearchResult, TrialSummary, primary_value, top_trials
from automl.settings import Settings, redact_url
from automl.spaces import SearchSpace
from automl.states import JobState, MlflowStatus, TrialState, from_optuna
from automl.tracking.plots import should_plot

if TYPE_CHECKING:
    import optuna

    from automl.engine.ledger import TrialLedger
    from automl.engine.plan import SearchPlan


def summarize(
    plan: SearchPlan,
    settings: Settings,
    study_name: str,
    study: optuna.Study,
    ledger: TrialLedger,
    tracker: Any,
    *,
    log_model: bool,
) -> SearchResult:
    """Read the study back into a result; when ``log_model``, log the best model and close the job's run."""
    spec = plan.spec
    by_number = ledger.by_number()

    def summary(t: Any) -> TrialSummary:
        record = by_number.get(t.number)
        params = dict(t.params) if t.params else dict(record.params) if record else {}
        reason = (record.outcome.reason if record and record.outcome else None) or t.user_attrs.get("fail_reason")
        values = tuple(t.values) if t.values else None
        return TrialSummary(
            number=t.number,
            state=from_optuna(t.state),
            value=values[0] if values else None,
            params=params,
            run_id=record.run_id if record else None,
            fail_reason=reason,
            values=values,
            started_at=t.datetime_start,
            finished_at=t.datetime_complete,
            intermediate={int(step): float(v) for step, v in t.intermediate_values.items()},
            user_attrs={k: v for k, v in t.user_attrs.items() if k != "fail_reason"},
        )

    trials = tuple(summary(t) for t in study.get_trials(deepcopy=False))
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if plan.multi_objective:
        front_numbers = {t.number for t in study.best_trials}
        pareto = tuple(t for t in trials if t.number in front_numbers)
    else:
        pareto = ()
    # The best trial: the best on the primary metric (of the Pareto front, with several metrics).
    best = next(iter(top_trials(list(pareto) or complete, plan.mode, 1)), None)
    model = None
    if log_model and best is not None and best.number in by_number:
        model = _log_best_model(plan, study_name, tracker, by_number[best.number], best, ledger)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    summary_metrics: dict[str, float] = {f"trials_{state.lower()}": n for state, n in counts.items()}
    summary_params: dict[str, Any] = {}
    summary_tags = {
        "automl.state": JobState.SUCCEEDED if best is not None else JobState.FAILED,
        "automl.trials": str(len(trials)),
    }
    if best is not None:
        summary_metrics[f"best_{plan.metric}"] = primary_value(best)
        summary_params = {f"best.{k}": v for k, v in best.params.items()}
        summary_tags.update({"automl.best_trial": str(best.number), "automl.best_run_id": best.run_id or ""})
    if model is not None:
        summary_tags["automl.best_model_uri"] = model.model_uri
    if ledger.tracking_errors:
        summary_tags["automl.tracking_errors"] = str(len(ledger.tracking_errors))
    if pareto:
        summary_tags["automl.pareto_size"] = str(len(pareto))
        summary_metrics["pareto_size"] = len(pareto)
    if log_model:
        ledger.safely(tracker.log_figure_json, "job/trials.json", [t.__dict__ for t in trials])
        if pareto:
            front = [
                {
                    "trial": t.number,
                    "run_id": t.run_id,
                    "params": t.params,
                    **dict(zip(plan.metrics, t.values or (), strict=False)),
                }
                for t in pareto
            ]
            ledger.safely(tracker.log_figure_json, "job/pareto_front.json", front)
        ledger.safely(
            tracker.finish_job,
            MlflowStatus.FINISHED if best is not None else MlflowStatus.FAILED,
            metrics=summary_metrics,
            params=summary_params,
            tags=summary_tags,
            # The plots are drawn after the run is closed (automl.engine.run._log_plots): say whether they come.
            plots=spec.tracking.plots and should_plot(None, len(complete)),
        )
    return SearchResult(
        job_name=spec.name,
        study_name=study_name,
        storage_url=redact_url(settings.storage_url),
        metric=plan.metric,
        mode=plan.mode,
        metrics=plan.metrics,
        modes=plan.modes,
        pareto_front=pareto,
        best_params=dict(best.params) if best else None,
        best_value=best.value if best else None,
        best_trial_number=best.number if best else None,
        trials=trials,
        experiment_id=tracker.experiment_id,
        parent_run_id=tracker.parent_run_id,
        tracking_uri=settings.tracking_uri,
        model_uri=model.model_uri if model else None,
        registered_model=(model.name, model.version) if model and model.name and model.version else None,
        tracking_errors=tuple(ledger.tracking_errors),
        sampler=spec.sampler.name,
        scheduler=spec.scheduler.name,
        strategy_reason=plan.strategy.reason if plan.strategy is not None else None,
    )


def _log_best_model(plan: SearchPlan, study_name: str, tracker: Any, record: Any, best: TrialSummary, ledger: TrialLedger) -> Any:
    """Load the best trial's checkpointed model and log it (registered, with where it came from) to that trial's MLflow run."""
    if record.checkpoint is None or record.run_id is None:
        return None
    from automl.tracking.registry import ModelOrigin

    # A checkpoint in a bucket that cannot be read now (the store is down) costs the model, not the job.
    loaded = ledger.safely(read_checkpointed_model, record.checkpoint)
    if loaded is None:
        return None
    model, info = loaded
    spec = plan.spec
    name = spec.registered_model_name if spec.tracking.register_model else None
    origin = ModelOrigin(
        job_name=spec.name,
        study_name=study_name,
        job_run_id=tracker.parent_run_id,
        trial_number=best.number,
        trial_run_name=ledger.safely(tracker.trial_run_name, best.number) or f"trial {best.number}",
        metric=plan.metric,
        mode=plan.mode,
        value=primary_value(best),
        params=dict(best.params),
    )
    return ledger.safely(tracker.log_model, record.run_id, model, registered_name=name, metadata=info, origin=origin)


def read_checkpointed_model(checkpoint: Any) -> tuple[Any, dict[str, Any]] | None:
    """The model a trial saved in ``checkpoint`` (a ``ray.tune.Checkpoint``) and its info, or ``None`` if it holds none.

    Read through the checkpoint, never by its path: a local folder is read where it is, one in a
    bucket is downloaded to a temporary folder first (removed after).
    """
    import json

    import torch

    from workers.context import MODEL_FILE, MODEL_INFO_FILE

    with checkpoint.as_directory() as folder:
        model_path = os.path.join(folder, MODEL_FILE)
        if not os.path.exists(model_path):
            return None
        model = torch.load(model_path, weights_only=False, map_location="cpu")
        info_path = os.path.join(folder, MODEL_INFO_FILE)
        info = json.loads(Path(info_path).read_text()) if os.path.exists(info_path) else {}
    return model, info


def job_params(plan: SearchPlan) -> dict[str, Any]:
    spec = plan.spec
    params: dict[str, Any] = {
        "metric": plan.metric,
        "mode": plan.mode,
        "sampler": spec.sampler.name,
        "scheduler": spec.scheduler.name,
        "trials": spec.budget.trials,
        "max_epochs": spec.budget.max_epochs,
        "seed": spec.seed,
        "cpus_per_trial": spec.resources.cpus_per_trial,
        "gpus_per_trial": spec.resources.gpus_per_trial,
    }
    if spec.trainer is not None:
        params.update({"trainer": spec.trainer.name, "dataset": spec.trainer.dataset})
    else:
        params["objective"] = spec.objective
    if isinstance(plan.space, SearchSpace):
        params["space"] = ", ".join(plan.space.params)
    if plan.strategy is not None:  # sampler and scheduler above are what auto chose; say that, and why
        params["strategy_asked"] = plan.strategy.asked
        params["strategy_reason"] = plan.strategy.reason
    return params


def job_tags(plan: SearchPlan, settings: Settings, study_name: str) -> dict[str, str]:
    return {
        "automl.kind": "job",
        "automl.job_name": plan.spec.name,
        "automl.study_name": study_name,
        "automl.optuna_storage": redact_url(settings.storage_url),
        # Where the trials' folders and checkpoints are: a local folder or a bucket.
        "automl.trial_storage": redact_url(settings.trial_storage),
        "automl.state": JobState.RUNNING,
    }


def space_artifact(plan: SearchPlan) -> dict[str, str]:
    if not isinstance(plan.space, SearchSpace):
        return {}
    import yaml

    return {"job/space.yaml": yaml.safe_dump(plan.space.model_dump(mode="json", exclude_none=True), sort_keys=False)}
