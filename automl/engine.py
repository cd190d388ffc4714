"""The engine: a job spec becomes an Optuna study driven through Ray Tune, tracked in MLflow.

The CLI and the Python API both end here, so a search is the same search whichever way it
was asked for: same storage, same tracking, same scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.errors import AutomlError, SpecError, exception_chain
from automl.results import SearchResult, TrialSummary
from automl.settings import Settings, prepare, redact_url, resolve_settings
from automl.spaces import SearchSpace
from automl.spec import JobSpec, check_spec, data_config, import_objective, resolve_metrics, spec_to_yaml

if TYPE_CHECKING:
    import optuna

    from automl.control import JobControl
    from automl.tune_callbacks import JobCallback, ProgressSink
    from workers.trainable import TrialPlan

logger = logging.getLogger(__name__)

SpaceArg = SearchSpace | Mapping[str, Any] | Callable[..., Any]


@dataclass(frozen=True)
class SearchPlan:
    """A spec with everything resolved: the space Optuna samples, the metric, what each trial runs.

    Attributes:
        spec: the validated job spec.
        space: a :class:`SearchSpace`, or an Optuna define-by-run function ``f(trial) -> dict | None``.
        metrics, modes: what the study optimises (several metrics: a Pareto front).
        trial_plan: what every trial receives besides its hyperparameters.
    """

    spec: JobSpec
    space: SearchSpace | Callable[..., Any]
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    trial_plan: TrialPlan

    @property
    def metric(self) -> str:
        """The primary metric: the scheduler stops trials on it; it picks the best of a Pareto front."""
        return self.metrics[0]

    @property
    def mode(self) -> str:
        """The primary metric's direction."""
        return self.modes[0]

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    def optuna_space(self) -> dict[str, Any] | Callable[..., Any]:
        """The space as ``OptunaSearch`` takes it."""
        return self.space.to_optuna() if isinstance(self.space, SearchSpace) else self.space


def plan_search(
    spec: JobSpec,
    *,
    base_dir: Path | None = None,
    objective: Callable[..., Any] | None = None,
    space: Callable[..., Any] | None = None,
) -> SearchPlan:
    """Resolve ``spec`` into a :class:`SearchPlan`, checking it against the outside world.

    Args:
        spec: the job spec.
        base_dir: the folder relative paths in the spec are read from (the spec file's folder).
        objective: the custom objective itself, when given in code rather than as ``module:function``.
        space: an Optuna define-by-run function, when given in code.

    Raises:
        SpecError: naming what is wrong, before anything is written.
    """
    from automl.schedulers import check_scheduler
    from workers.trainable import TrialPlan

    resolved_space = check_spec(spec, base_dir=base_dir, space=space, import_objective_ref=False)
    if objective is None and spec.objective is not None:
        # Import it here and ship the function itself, by value when it is the user's own file:
        # the nodes of a cluster do not have the driver's folders.
        objective = import_objective(spec.objective, base_dir=base_dir)
    metrics, modes = resolve_metrics(spec, base_dir=base_dir)
    _check_sampler(spec, resolved_space, len(metrics))
    _check_warm_start(spec, resolved_space)
    # Scheduler options that cannot work are refused here; PBT says how often trials must checkpoint.
    checkpoint_interval = check_scheduler(spec, resolved_space)
    import_paths = tuple(str(p.resolve()) for p in (base_dir, Path.cwd()) if p is not None)
    trial_plan = TrialPlan(
        max_epochs=spec.budget.max_epochs,
        seed=spec.seed,
        cpus=spec.resources.cpus_per_trial,
        gpus=spec.resources.gpus_per_trial,
        metric=metrics[0],
        metrics=metrics,
        trainer=spec.trainer.name if spec.trainer else None,
        data=data_config(spec, base_dir=base_dir) if spec.trainer else None,
        objective=objective if objective is not None else spec.objective,
        import_paths=import_paths,
        checkpoint_interval=checkpoint_interval,
    )
    if objective is not None:
        _pickle_by_value_if_local(objective)
    return SearchPlan(spec, resolved_space, metrics, modes, trial_plan)


def _check_sampler(spec: JobSpec, space: Any, n_objectives: int) -> None:
    """Build the sampler once, so a wrong option or a grid it cannot enumerate is refused up front."""
    from automl.samplers import SamplerRequest, create_sampler, grid_size

    request = SamplerRequest(
        seed=spec.seed,
        options=spec.sampler.options,
        space=space if isinstance(space, SearchSpace) else None,
        n_objectives=n_objectives,
    )
    try:
        create_sampler(spec.sampler.name, request)
    except ValueError as exc:
        raise SpecError(f"sampler: {exc}") from None
    if spec.sampler.name == "grid" and isinstance(space, SearchSpace) and grid_size(space) < spec.budget.trials:
        raise SpecError(
            f"budget.trials: the grid has {grid_size(space)} points, fewer than the {spec.budget.trials} trials asked for"
        )


def _check_warm_start(spec: JobSpec, space: Any) -> None:
    """Each warm-start configuration must name the space's parameters with values inside it."""
    if not spec.warm_start.configs or not isinstance(space, SearchSpace):
        return
    distributions = space.to_optuna()
    for index, config in enumerate(spec.warm_start.configs):
        field = f"warm_start.configs[{index}]"
        missing = sorted(set(distributions) - set(config))
        unknown = sorted(set(config) - set(distributions))
        if missing or unknown:
            raise SpecError(f"{field}: needs exactly the space's parameters (missing: {missing or 'none'}, unknown: {unknown or 'none'})")
        for name, value in config.items():
            dist = distributions[name]
            try:
                inside = dist._contains(dist.to_internal_repr(value))
            except (ValueError, TypeError):
                inside = False
            if not inside:
                raise SpecError(f"{field}.{name}: {value!r} is outside the space ({dist})")


def run_search(
    plan: SearchPlan,
    *,
    settings: Settings | None = None,
    study_name: str | None = None,
    progress: ProgressSink | None = None,
    control: JobControl | None = None,
    parent_run_id: str | None = None,
) -> SearchResult:
    """Run the search described by ``plan`` to the end and return its result.

    When the study ``study_name`` already exists (a job resumed after its runner died or
    stopped), its finished trials stay, its trials left RUNNING are retried with the same
    parameters and trial numbers, and only the missing trials run, so the job ends with exactly
    ``budget.trials`` finished trials. ``parent_run_id`` reopens the job's MLflow run.

    Raises:
        AutomlError: the state directory, the tracking store or Ray cannot be used.
    """
    spec = plan.spec
    settings = settings or resolve_settings(tracking_uri=spec.tracking.tracking_uri)
    prepare(settings)
    study_name = study_name or f"{spec.name}-{uuid.uuid4().hex[:8]}"
    with quiet_libraries():
        return _run(plan, settings, study_name, progress, control, parent_run_id)


def _run(
    plan: SearchPlan,
    settings: Settings,
    study_name: str,
    progress: ProgressSink | None,
    control: JobControl | None,
    parent_run_id: str | None,
) -> SearchResult:
    """One search: Optuna study, MLflow runs and Ray Tune; its per-trial writes made by the process's writer."""
    from automl import write_behind
    from automl.optuna_bridge import StudySearch
    from automl.plots import log_search_plots
    from automl.samplers import SamplerRequest, create_sampler
    from automl.tracking import MlflowTracker
    from automl.tune_callbacks import JobCallback
    from automl.write_behind import RemoteTrialRuns

    spec = plan.spec
    # Started now if this is the process's first search: it imports MLflow and Optuna while
    # Ray and the stores open.
    writer = write_behind.shared() if write_behind.enabled() else None
    ensure_ray(settings.ray_address)
    check_resources(spec)
    storage = _optuna_storage(settings.storage_url)
    prior = _prior_trials(storage, study_name)
    finished = [t for t in prior if t.state.is_finished()]
    stale = [t for t in prior if t.state.name == "RUNNING"]
    tracker = MlflowTracker(settings.tracking_uri, artifact_root=settings.artifact_root)
    if parent_run_id is not None:
        tracker.resume_job(parent_run_id)
    else:
        tracker.start_job(
            experiment=spec.experiment_name,
            run_name=study_name,
            params=_job_params(plan),
            tags=_job_tags(plan, settings, study_name),
            artifacts={"job/spec.yaml": spec_to_yaml(spec), **_space_artifact(plan)},
            description=spec.description,
        )
    if control is not None:
        control.on_tracking(tracker.experiment_id, tracker.parent_run_id)
    status = "FAILED"
    callback: JobCallback | None = None
    # This job's state in the writer (None: its writes are made here).
    remote = writer.job(f"{study_name}-{uuid.uuid4().hex[:8]}") if writer is not None else None
    try:
        existing_runs = _reconcile_tracking(tracker, finished, plan.metric) if prior else {}
        if prior and control is not None:
            control.on_event(
                "resumed",
                f"resuming: {len(finished)} trials already finished, {len(stale)} interrupted trials to retry, "
                f"{max(spec.budget.trials - len(finished), 0)} to run",
            )
        concurrency = spec.resources.max_concurrent or _default_concurrency(spec)
        stopping = control.stop_reason if control is not None else None
        searcher = StudySearch(
            space=plan.optuna_space(),
            metric=list(plan.metrics) if plan.multi_objective else plan.metric,
            mode=list(plan.modes) if plan.multi_objective else plan.mode,
            # A resumed job reseeds its sampler, or it would propose the points it already tried.
            sampler=create_sampler(
                spec.sampler.name,
                SamplerRequest(
                    seed=spec.seed + len(prior),
                    options=spec.sampler.options,
                    concurrency=concurrency,
                    space=plan.space if isinstance(plan.space, SearchSpace) else None,
                    n_objectives=len(plan.metrics),
                ),
            ),
            study_name=study_name,
            storage=storage,
            resume=stale,
            interruption=stopping,
        )
        searcher.durable_study.set_user_attr("job_name", spec.name)
        searcher.durable_study.set_user_attr("mlflow_parent_run_id", tracker.parent_run_id)
        if not prior:
            warm = _warm_start_configs(spec, storage, plan)
            for config in warm:
                searcher.enqueue(config)
            if warm and control is not None:
                control.on_event("warm_start", f"{len(warm)} configurations queued to run first")
        trial_runs = None
        if remote is not None:
            remote.send("open_study", settings.storage_url, study_name)
            searcher.write_behind(remote)
            remote.send("open_tracking", settings.tracking_uri, settings.artifact_root, tracker.experiment_id, tracker.parent_run_id)
            trial_runs = RemoteTrialRuns(remote)
        complete = [t.values[0] for t in finished if t.state.name == "COMPLETE" and t.values]
        callback = JobCallback(
            searcher,
            plan.metric,
            plan.mode,
            tracker=tracker,
            progress=progress,
            control=control,
            existing_runs=existing_runs,
            finished=len(finished),
            best_value=(max if plan.mode == "max" else min)(complete) if complete else None,
            target=spec.budget.target,
            patience=spec.budget.patience,
            trial_runs=trial_runs,
        )
        remaining = spec.budget.trials - len(finished)
        if progress is not None:
            progress.start(spec.budget.trials)
            for t in finished:
                progress.trial_done(t.state.name, callback.best_value)
        try:
            if remaining > 0:
                _tuner(plan, study_name, settings, searcher, callback, remaining, concurrency, control).fit()
        finally:
            if progress is not None:
                progress.stop()
        _settle(searcher, callback, control)
        searcher.drain()  # every trial durable in the study before anything reads it back
        callback.flush()
        log_search_plots(tracker, searcher.durable_study, plan.metrics, control)  # plots/ on the parent run; never raises
        early = callback.early_stop_reason()
        if early is not None and control is not None:
            control.on_event("stopped_early", f"stopped early: {early}")
        reason = control.stop_reason() if control is not None else None
        if reason is not None:
            status = "KILLED" if reason == "cancel" else "RUNNING"
            return _summary(plan, settings, study_name, searcher.study, callback, tracker, log_model=False)
        result = _finish(plan, settings, study_name, searcher.study, callback, tracker)
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if callback is not None:
            callback.shutdown()
        if remote is not None:
            remote.close()  # every write of the job made before the job is reported done
        if status == "KILLED":
            with contextlib.suppress(Exception):
                tracker.finish_job("KILLED", metrics={}, params={}, tags={"automl.state": "cancelled"})
        elif status == "FAILED":
            with contextlib.suppress(Exception):
                tracker.finish_job("FAILED", metrics={}, params={}, tags={"automl.state": "failed"})


def _tuner(
    plan: SearchPlan,
    study_name: str,
    settings: Settings,
    searcher: Any,
    callback: JobCallback,
    num_samples: int,
    concurrency: int,
    control: JobControl | None,
) -> Any:
    """The Tune run: our searcher and scheduler, actors reused, Tune's own output and loggers off."""
    from ray import tune

    from ray.tune.registry import register_trainable

    from automl.schedulers import tune_setup
    from automl.tune_callbacks import JobStopper, TrialTimeout
    from workers.trainable import run_trial

    spec = plan.spec
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, plan=plan.trial_plan),
        {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial},
    )
    # Tune keeps trainables in a process-wide registry, by name and without a lock. Jobs that a
    # runner runs side by side each register under their own name (or one job's trials would
    # run the other's plan), one at a time, and hand Tune the name.
    name = f"automl_{study_name}_{uuid.uuid4().hex[:6]}"
    with _REGISTRY_LOCK:
        register_trainable(name, trainable)
    # PBT brings its own search algorithm around the searcher (see automl.schedulers.tune_setup).
    setup = tune_setup(plan, searcher, callback=callback, study_name=study_name, concurrency=concurrency)
    return tune.Tuner(
        name,
        tune_config=tune.TuneConfig(
            search_alg=setup.search_alg,
            scheduler=setup.scheduler,
            num_samples=num_samples,
            max_concurrent_trials=setup.max_concurrent_trials,
            reuse_actors=True,
            time_budget_s=spec.budget.time_limit_s,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"{study_name}-{uuid.uuid4().hex[:6]}",
            storage_path=str(settings.ray_results),
            callbacks=[callback, TrialTimeout(callback, spec.budget.trial_timeout_s)] if spec.budget.trial_timeout_s else [callback],
            stop=JobStopper(callback, control),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=setup.checkpoints_to_keep),
        ),
    )


def _warm_start_configs(spec: JobSpec, storage: Any, plan: SearchPlan) -> list[dict[str, Any]]:
    """The configurations to evaluate first: the spec's own, then an earlier study's best trials."""
    configs = [dict(c) for c in spec.warm_start.configs]
    source = spec.warm_start.from_study
    if source is None:
        return configs
    import optuna

    try:
        earlier = optuna.load_study(study_name=source, storage=storage)
    except KeyError:
        raise SpecError(f"warm_start.from_study: no study {source!r} in the Optuna storage") from None
    done = [t for t in earlier.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.values]
    maximize = earlier.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.values[0], reverse=maximize)
    names = set(plan.space.params) if isinstance(plan.space, SearchSpace) else None
    for trial in done[: spec.warm_start.top]:
        params = dict(trial.params)
        if names is None or set(params) == names:
            configs.append(params)
    return configs


def _prior_trials(storage: Any, study_name: str) -> list[Any]:
    """The trials of ``study_name`` if the study exists (a resumed job), else none."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False)


def _reconcile_tracking(tracker: Any, finished: list[Any], metric: str) -> dict[int, str]:
    """Bring MLflow up to the study after a runner died: close runs of trials the study says
    finished, create the ones it never opened. Returns the run id of every trial seen so far."""
    runs = tracker.child_runs()
    for trial in finished:
        run = runs.get(trial.number)
        state = trial.state.name
        if run is not None and run.info.status != "RUNNING" and run.data.tags.get("automl.state") == state:
            continue
        if run is None:
            run_id = tracker.start_trial(trial.number, trial.params, {})
            for step, value in sorted(trial.intermediate_values.items()):
                tracker.log_metrics(run_id, {metric: value}, step)
        else:
            run_id = run.info.run_id
        tracker.end_trial(run_id, state, reason=trial.user_attrs.get("fail_reason"), error_text=None)
        runs[trial.number] = tracker.client.get_run(run_id)
    return {number: run.info.run_id for number, run in runs.items()}


def _settle(searcher: Any, callback: JobCallback, control: JobControl | None) -> None:
    """Give every trial Tune left unfinished (a stop, a time limit) its final state."""
    from automl.optuna_bridge import INTERRUPTED, TrialOutcome

    reason = control.stop_reason() if control is not None else None
    for trial_id in searcher.unfinished():
        record = callback.records.get(trial_id)
        if reason == "release":
            continue  # stays RUNNING: the next runner retries it
        if reason == "cancel":
            outcome = TrialOutcome("FAIL", None, "the job was cancelled")
        elif searcher.reported(trial_id):
            outcome = TrialOutcome("PRUNED", None, None)
        else:
            outcome = TrialOutcome("FAIL", None, "the job stopped (time limit, target or patience) before it reported")
        searcher.settle(trial_id, outcome)
        if record is None:  # proposed but never started: it still gets its MLflow run
            record = callback.open_record(trial_id, searcher.trial_number(trial_id) or 0, searcher.trial_params(trial_id))
        if record.outcome is None or record.outcome.state == INTERRUPTED:
            callback.close(record, outcome)


def _summary(
    plan: SearchPlan,
    settings: Settings,
    study_name: str,
    study: optuna.Study,
    callback: JobCallback,
    tracker: Any,
    *,
    log_model: bool,
) -> SearchResult:
    """Read the study back into a result; when ``log_model``, log the best model and close the job's run."""
    spec = plan.spec
    by_number = {record.number: record for record in callback.records.values()}

    def summary(t: Any) -> TrialSummary:
        record = by_number.get(t.number)
        params = dict(t.params) if t.params else dict(record.params) if record else {}
        reason = (record.outcome.reason if record and record.outcome else None) or t.user_attrs.get("fail_reason")
        values = tuple(t.values) if t.values else None
        return TrialSummary(
            number=t.number,
            state=t.state.name,
            value=values[0] if values else None,
            params=params,
            run_id=record.run_id if record else None,
            fail_reason=reason,
            values=values,
        )

    trials = tuple(summary(t) for t in study.get_trials(deepcopy=False))
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    if plan.multi_objective:
        front_numbers = {t.number for t in study.best_trials}
        pareto = tuple(t for t in trials if t.number in front_numbers)
    else:
        pareto = ()
    # The best trial: the best on the primary metric (of the Pareto front, with several metrics).
    pool = list(pareto) or complete
    best = (max if plan.mode == "max" else min)(pool, key=lambda t: t.value) if pool else None  # type: ignore[arg-type,return-value]
    model = None
    if log_model and best is not None and best.number in by_number:
        model = _log_best_model(spec, tracker, by_number[best.number], callback)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    summary_metrics = {f"trials_{state.lower()}": n for state, n in counts.items()}
    summary_params: dict[str, Any] = {}
    summary_tags = {"automl.state": "succeeded" if best is not None else "failed", "automl.trials": str(len(trials))}
    if best is not None:
        summary_metrics[f"best_{plan.metric}"] = float(best.value)  # type: ignore[arg-type]
        summary_params = {f"best.{k}": v for k, v in best.params.items()}
        summary_tags.update({"automl.best_trial": str(best.number), "automl.best_run_id": best.run_id or ""})
    if model is not None:
        summary_tags["automl.best_model_uri"] = model.model_uri
    if callback.tracking_errors:
        summary_tags["automl.tracking_errors"] = str(len(callback.tracking_errors))
    if pareto:
        summary_tags["automl.pareto_size"] = str(len(pareto))
        summary_metrics["pareto_size"] = len(pareto)
    if log_model:
        callback._safely(tracker.log_figure_json, "job/trials.json", [t.__dict__ for t in trials])
        if pareto:
            front = [{"trial": t.number, "run_id": t.run_id, "params": t.params, **dict(zip(plan.metrics, t.values or ()))} for t in pareto]
            callback._safely(tracker.log_figure_json, "job/pareto_front.json", front)
        callback._safely(
            tracker.finish_job,
            "FINISHED" if best is not None else "FAILED",
            metrics=summary_metrics,
            params=summary_params,
            tags=summary_tags,
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
        tracking_errors=tuple(callback.tracking_errors),
    )



def _finish(
    plan: SearchPlan, settings: Settings, study_name: str, study: optuna.Study, callback: JobCallback, tracker: Any
) -> SearchResult:
    """Read the study back, log and register the best model, and write the job's summary."""
    return _summary(plan, settings, study_name, study, callback, tracker, log_model=True)


def _log_best_model(spec: JobSpec, tracker: Any, record: Any, callback: JobCallback) -> Any:
    """Load the best trial's checkpointed model and log it (registered) to that trial's MLflow run."""
    if record.checkpoint_path is None or record.run_id is None:
        return None
    import json

    import numpy as np
    import torch

    from workers.context import MODEL_FILE, MODEL_INFO_FILE

    model_path = os.path.join(record.checkpoint_path, MODEL_FILE)
    if not os.path.exists(model_path):
        return None
    model = torch.load(model_path, weights_only=False, map_location="cpu")
    info_path = os.path.join(record.checkpoint_path, MODEL_INFO_FILE)
    info = json.loads(Path(info_path).read_text()) if os.path.exists(info_path) else {}
    shape = info.get("input_shape")
    example = np.zeros((2, *shape), dtype=np.float32) if shape else None
    name = spec.registered_model_name if spec.tracking.register_model else None
    return callback._safely(
        tracker.log_model, record.run_id, model, registered_name=name, input_example=example, metadata=info
    )


def _job_params(plan: SearchPlan) -> dict[str, Any]:
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
    return params


def _job_tags(plan: SearchPlan, settings: Settings, study_name: str) -> dict[str, str]:
    return {
        "automl.kind": "job",
        "automl.job_name": plan.spec.name,
        "automl.study_name": study_name,
        "automl.optuna_storage": redact_url(settings.storage_url),
        "automl.state": "running",
    }


def _space_artifact(plan: SearchPlan) -> dict[str, str]:
    if not isinstance(plan.space, SearchSpace):
        return {}
    import yaml

    return {"job/space.yaml": yaml.safe_dump(plan.space.model_dump(mode="json", exclude_none=True), sort_keys=False)}


_REGISTRY_LOCK = threading.Lock()
_STORAGES: dict[str, Any] = {}
_STORAGES_LOCK = threading.Lock()


def _optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """One Optuna RDB storage per URL per process, shared by the jobs a runner runs side by side."""
    import optuna

    with _STORAGES_LOCK:
        if url in _STORAGES:
            return _STORAGES[url]
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # Wait for a lock instead of failing at once when another process writes.
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 30}}
        else:
            # A server restart leaves the pool's connections dead: test each before use.
            kwargs["engine_kwargs"] = {"pool_pre_ping": True}
        for attempt in range(3):
            try:
                storage = optuna.storages.RDBStorage(url, **kwargs)
                break
            except Exception as exc:  # noqa: BLE001
                # Two processes creating the schema of a new database at once: the loser's CREATE
                # TABLE finds the table made ("already exists") or its stamp of the schema version
                # finds the winner's (an IntegrityError); on the retry the schema is there.
                if _lost_schema_race(exc) and attempt < 2:
                    time.sleep(0.5)
                    continue
                raise AutomlError(f"cannot open the Optuna storage {redact_url(url)}: {exc}") from exc
        if url.startswith("sqlite"):
            _tune_sqlite(storage)
        _STORAGES[url] = storage
        return storage


def _lost_schema_race(exc: BaseException) -> bool:
    """Whether opening a storage failed because another process was creating its schema too."""
    from sqlalchemy.exc import IntegrityError

    return any(isinstance(e, IntegrityError) or "already exists" in str(e) for e in exception_chain(exc))


def _tune_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """WAL with ``synchronous=NORMAL`` on the study database's connections.

    Optuna opens SQLite in rollback-journal mode, which syncs the disk several times per
    commit, and a trial is several commits. In WAL mode with NORMAL sync a commit is durable
    against a crash of the process (kill -9 included), though the last commits may be lost
    if the whole machine loses power; readers (``automl status``) no longer block the writer.
    """
    from sqlalchemy import event

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # connections opened while creating the schema get the pragmas too


def _default_concurrency(spec: JobSpec) -> int:
    import ray

    cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1) if ray.is_initialized() else (os.cpu_count() or 1)
    return max(1, int(cpus // spec.resources.cpus_per_trial))


def _trial_dirname(trial: Any) -> str:
    return f"trial-{trial.config.get('_trial_number', 0):04d}-{trial.trial_id}"


def ensure_ray(address: str | None) -> None:
    """Connect to the Ray cluster at ``address``, or start a local Ray sized to this machine.

    Reuses an instance already started in this process (tests share one).

    Raises:
        AutomlError: the cluster cannot be reached.
    """
    import ray

    if ray.is_initialized():
        return
    if address and address != "auto":
        _check_reachable(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if "InvalidAuthToken" in f"{exc} {exc.__cause__}" or "AuthenticationError" in f"{exc} {exc.__cause__}":
            raise AutomlError(
                f"the Ray cluster at {address} refused this driver's token: it uses token authentication. "
                "Set RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH."
            ) from exc
        raise AutomlError(
            f"cannot connect to the Ray cluster at {address}: {exc}. Check the address, or unset RAY_ADDRESS to run locally."
        ) from exc


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at a Ray address (``ray.init`` waits long)."""
    from automl.netcheck import check_tcp

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise AutomlError(f"the Ray address {address!r} is not host:port (or ray://host:port, or auto)")
    check_tcp(
        host,
        int(port),
        what=f"the Ray cluster at {address}",
        hint="Check that the head node is up (ray start --head) and the address, or unset RAY_ADDRESS to run locally.",
    )


def check_resources(spec: JobSpec) -> None:
    """Refuse a job whose trials ask for more than the whole Ray cluster has: Tune would wait forever.

    Raises:
        SpecError: naming ``resources.cpus_per_trial`` or ``resources.gpus_per_trial``.
    """
    import ray

    total = ray.cluster_resources()
    for field, key, asked in (
        ("cpus_per_trial", "CPU", spec.resources.cpus_per_trial),
        ("gpus_per_trial", "GPU", spec.resources.gpus_per_trial),
    ):
        have = float(total.get(key, 0.0))
        if asked > have:
            hint = " Lower it, or point RAY_ADDRESS at a cluster with GPUs." if key == "GPU" else " Lower it."
            raise SpecError(f"resources.{field}: each trial asks for {asked:g} {key}, the Ray cluster has {have:g}.{hint}")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Keep Tune's tables, Optuna's per-trial lines and MLflow's info logs off the terminal."""
    import mlflow  # noqa: F401 - imported first: it sets its own log levels on import
    import optuna

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A trial that reports without the job's metric fails alone (see trial_outcome); Tune's
    # strict check would end the whole search instead.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "auto")
    names = ("ray.tune", "ray.train", "ray.air", "mlflow", "alembic")
    loggers = {name: logging.getLogger(name) for name in names}
    levels = {name: lg.level for name, lg in loggers.items()}
    previous_optuna = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for lg in loggers.values():
        # Failed trials are reported by the service itself (table, MLflow, events), once.
        lg.setLevel(logging.CRITICAL if lg.name.startswith("ray") else logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous_optuna)
        for name, lg in loggers.items():
            lg.setLevel(levels[name])


def _pickle_by_value_if_local(objective: Callable[..., Any]) -> None:
    """Ship a user's objective by value when its module is a script or test file a Ray worker cannot import."""
    module = sys.modules.get(getattr(objective, "__module__", "") or "")
    path = getattr(module, "__file__", None) or ""
    if module is None or module.__name__ == "__main__" or "site-packages" in path:
        return
    import ray.cloudpickle

    with contextlib.suppress(ValueError):
        ray.cloudpickle.register_pickle_by_value(module)


__all__ = ["SearchPlan", "SpecError", "ensure_ray", "plan_search", "run_search"]
