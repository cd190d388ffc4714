"""A :class:`~automl.engine.plan.SearchPlan` run: an Optuna study driven through Ray Tune, tracked in MLflow.

The CLI, the runner and the Python API all end here, so a search is the same search whichever
way it was asked for: same storage, same tracking, same scheduler. What must stay true: a
resumed job keeps its finished trials and retries its interrupted ones with the same
parameters; every trial Tune leaves unfinished gets a final state in the study and in MLflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from automl.engine.cluster import check_resources, default_concurrency, ensure_ray, quiet_libraries
from automl.engine.phases import PhaseClock
from automl.engine.plan import SearchPlan
from automl.engine.studies import name_metrics, open_storage, prior_trials, warm_start_configs
from automl.engine.summary import job_params, job_tags, space_artifact, summarize
from automl.results import SearchResult
from automl.settings import Settings, open_trial_storage, prepare, resolve_settings
from automl.spaces import SearchSpace
from automl.spec import spec_to_yaml
from automl.states import JobState, MlflowStatus, StopReason, TrialState, from_optuna

if TYPE_CHECKING:
    from automl.control import JobControl
    from automl.engine.callbacks import JobCallback, ProgressSink
    from automl.shipping.provenance import Provenance

logger = logging.getLogger(__name__)


def run_search(
    plan: SearchPlan,
    *,
    settings: Settings | None = None,
    study_name: str | None = None,
    progress: ProgressSink | None = None,
    control: JobControl | None = None,
    parent_run_id: str | None = None,
    provenance: Provenance | None = None,
) -> SearchResult:
    """Run the search described by ``plan`` to the end and return its result.

    When the study ``study_name`` already exists (a job resumed after its runner died or
    stopped), its finished trials stay, its trials left RUNNING are retried with the same
    parameters and trial numbers, and only the missing trials run, so the job ends with exactly
    ``budget.trials`` finished trials. ``parent_run_id`` reopens the job's MLflow run.
    ``provenance`` (the job's code package and data file) is recorded on a new run.

    Raises:
        AutomlError: the state directory, the tracking store or Ray cannot be used.
    """
    spec = plan.spec
    settings = settings or resolve_settings(tracking_uri=spec.tracking.tracking_uri)
    prepare(settings)
    study_name = study_name or f"{spec.name}-{uuid.uuid4().hex[:8]}"
    try:
        with quiet_libraries():
            return _run(plan, settings, study_name, progress, control, parent_run_id, provenance)
    finally:
        if progress is not None:  # started before Ray: stopped whatever ended the run
            progress.stop()


def _run(
    plan: SearchPlan,
    settings: Settings,
    study_name: str,
    progress: ProgressSink | None,
    control: JobControl | None,
    parent_run_id: str | None,
    provenance: Provenance | None = None,
) -> SearchResult:
    """One search: Optuna study, MLflow runs and Ray Tune; its per-trial writes made by the process's writer."""
    from automl.engine.callbacks import JobCallback
    from automl.engine.ledger import TrialLedger
    from automl.engine.samplers import SamplerRequest, create_sampler, startup_note
    from automl.engine.study_search import StudySearch
    from automl.engine.write_behind import RemoteTrialRuns, enabled, shared
    from automl.tracking import MlflowTracker

    spec = plan.spec
    phases = PhaseClock()
    if progress is not None:  # the bar shows from the start, saying what it waits for until trials run
        progress.start(spec.budget.trials)
    say = progress.waiting if progress is not None else (lambda what: None)
    # Started now if this is the process's first search: it imports MLflow and Optuna while
    # Ray and the stores open.
    writer = shared() if enabled() else None
    phases.mark("writer")
    # The bucket, if the trials keep their checkpoints in one, is checked before anything is written.
    trial_storage = open_trial_storage(settings)
    say(f"connecting to the Ray cluster at {settings.ray_address}" if settings.ray_address else "starting Ray")
    ensure_ray(settings.ray_address)
    check_resources(spec)
    phases.mark("ray")
    say("opening the Optuna study")
    storage = open_storage(settings.storage_url)
    prior = prior_trials(storage, study_name)
    phases.mark("stores")
    say("opening the job's MLflow run")
    finished = [t for t in prior if t.state.is_finished()]
    stale = [t for t in prior if from_optuna(t.state) == TrialState.RUNNING]
    tracker = MlflowTracker(settings.tracking_uri, artifact_root=settings.artifact_root)
    if parent_run_id is not None:
        tracker.resume_job(parent_run_id)
    else:
        tracker.start_job(
            experiment=spec.experiment_name,
            run_name=study_name,
            params=job_params(plan),
            tags=job_tags(plan, settings, study_name),
            artifacts={"job/spec.yaml": spec_to_yaml(spec), **space_artifact(plan)},
            description=spec.description,
        )
        if provenance is not None and tracker.parent_run_id is not None:
            _log_provenance(tracker, provenance)
    if control is not None:
        control.on_tracking(tracker.experiment_id, tracker.parent_run_id)
    phases.mark("tracking")
    status = MlflowStatus.FAILED
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
        concurrency = spec.resources.max_concurrent or default_concurrency(spec)
        stopping = control.stop_reason if control is not None else None
        sampler_request = SamplerRequest(
            # A resumed job reseeds its sampler, or it would propose the points it already tried.
            seed=spec.seed + len(prior),
            options=spec.sampler.options,
            concurrency=concurrency,
            space=plan.space if isinstance(plan.space, SearchSpace) else None,
            n_objectives=len(plan.metrics),
            budget=spec.budget.trials,
        )
        searcher = StudySearch(
            space=plan.optuna_space(),
            metric=list(plan.metrics) if plan.multi_objective else plan.metric,
            mode=list(plan.modes) if plan.multi_objective else plan.mode,
            sampler=create_sampler(spec.sampler.name, sampler_request),
            study_name=study_name,
            storage=storage,
            resume=stale,
            interruption=stopping,
        )
        searcher.durable_study.set_user_attr("job_name", spec.name)
        searcher.durable_study.set_user_attr("mlflow_parent_run_id", tracker.parent_run_id)
        name_metrics(searcher.durable_study, plan.metrics)
        if not prior:
            if plan.strategy is not None and control is not None:  # what auto chose, once, as the job starts
                control.on_event("strategy", plan.strategy.summary())
            warm = warm_start_configs(spec, storage, plan)
            for config in warm:
                searcher.enqueue(config)
            if warm and control is not None:
                control.on_event("warm_start", f"{len(warm)} configurations queued to run first")
            # TPE and GP draw their first trials at random: say how many, so a short job's results are read right.
            startup = startup_note(spec.sampler.name, sampler_request)
            if startup is not None and control is not None:
                control.on_event("sampler", startup)
        trial_runs = None
        if remote is not None:
            remote.send("open_study", settings.storage_url, study_name)
            searcher.write_behind(remote)
            remote.send(
                "open_tracking", settings.tracking_uri, settings.artifact_root, tracker.experiment_id, tracker.parent_run_id
            )
            trial_runs = RemoteTrialRuns(remote)
        complete = [t.values[0] for t in finished if from_optuna(t.state) == TrialState.COMPLETE and t.values]
        ledger = TrialLedger(
            plan.metric,
            plan.mode,
            finished=len(finished),
            best_value=(max if plan.mode == "max" else min)(complete) if complete else None,
            target=spec.budget.target,
            patience=spec.budget.patience,
        )
        callback = JobCallback(
            searcher,
            ledger,
            tracker=tracker,
            progress=progress,
            control=control,
            existing_runs=existing_runs,
            trial_runs=trial_runs,
        )
        remaining = spec.budget.trials - len(finished)
        if progress is not None:
            for t in finished:
                progress.trial_done(from_optuna(t.state), ledger.best_value)
        say("starting the first trials")
        phases.mark("set-up")
        tune_started = datetime.now()  # noqa: DTZ005 - Optuna stamps its trials with naive local times
        try:
            if remaining > 0:
                _tuner(plan, study_name, trial_storage, searcher, callback, remaining, concurrency, control).fit()
        finally:
            if progress is not None:
                progress.stop()
        phases.mark("trials", _first_trial_note(searcher.study, tune_started))
        _settle(searcher, callback, control)
        searcher.drain()  # every trial durable in the study before anything reads it back
        callback.flush()
        phases.mark("settle")
        _log_plots(remote is not None, settings, study_name, tracker, searcher, plan, control)
        phases.mark("plots")
        early = ledger.early_stop_reason()
        if early is not None and control is not None:
            control.on_event("stopped_early", f"stopped early: {early}")
        reason = control.stop_reason() if control is not None else None
        if reason is not None:
            status = MlflowStatus.KILLED if reason == StopReason.CANCEL else MlflowStatus.RUNNING
            return _with_phases(
                summarize(plan, settings, study_name, searcher.study, ledger, tracker, log_model=False), phases, control
            )
        result = _with_phases(
            summarize(plan, settings, study_name, searcher.study, ledger, tracker, log_model=True), phases, control
        )
        status = MlflowStatus.FINISHED
        return result
    except KeyboardInterrupt:
        status = MlflowStatus.KILLED
        raise
    finally:
        if callback is not None:
            callback.shutdown()
        if remote is not None:
            remote.close()  # every write of the job made before the job is reported done
        if status == MlflowStatus.KILLED:
            with contextlib.suppress(Exception):
                tracker.finish_job(MlflowStatus.KILLED, metrics={}, params={}, tags={"automl.state": JobState.CANCELLED})
        elif status == MlflowStatus.FAILED:
            with contextlib.suppress(Exception):
                tracker.finish_job(MlflowStatus.FAILED, metrics={}, params={}, tags={"automl.state": JobState.FAILED})


def _tuner(
    plan: SearchPlan,
    study_name: str,
    trial_storage: tuple[str, Any],
    searcher: Any,
    callback: JobCallback,
    num_samples: int,
    concurrency: int,
    control: JobControl | None,
) -> Any:
    """The Tune run: our searcher and scheduler, actors reused, Tune's own output and loggers off.

    ``trial_storage`` is Tune's storage path and filesystem (:func:`~automl.settings.open_trial_storage`):
    a local folder, or a bucket that every trial writes its checkpoints to and restores them from
    (PBT's clones, a failed trial's retry), and that the driver reads the best model from.
    """
    from ray import tune
    from ray.tune.registry import register_trainable

    from automl.engine.callbacks import JobStopper, TrialTimeout
    from automl.engine.schedulers import build_scheduler, scheduler_kind
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
    scheduler = build_scheduler(spec.scheduler.name, plan.scheduler_request())
    # Each kind's setup hook: most run beside the searcher; PBT brings a population search around it.
    setup = scheduler_kind(spec.scheduler.name).setup(scheduler, searcher, study_name, callback.tag_run, concurrency)
    storage_path, storage_filesystem = trial_storage
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
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            callbacks=[callback, TrialTimeout(searcher, callback.ledger, spec.budget.trial_timeout_s)]
            if spec.budget.trial_timeout_s
            else [callback],
            stop=JobStopper(callback.ledger, control),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=setup.checkpoints_to_keep),
        ),
    )


def _log_provenance(tracker: Any, provenance: Provenance) -> None:
    """The job's code and data hashes on its run; a failure to write them is logged, not fatal."""
    from automl.tracking.provenance import log_provenance

    try:
        log_provenance(tracker.client, tracker.parent_run_id, provenance)
    except Exception as exc:  # noqa: BLE001 - the search matters more than its provenance record
        logger.warning("could not record the job's code and data on its MLflow run: %s", exc)


def _reconcile_tracking(tracker: Any, finished: list[Any], metric: str) -> dict[int, str]:
    """Bring MLflow up to the study after a runner died: close runs of trials the study says
    finished, create the ones it never opened. Returns the run id of every trial seen so far."""
    runs = tracker.child_runs()
    for trial in finished:
        run = runs.get(trial.number)
        state = from_optuna(trial.state)
        if run is not None and run.info.status != MlflowStatus.RUNNING and run.data.tags.get("automl.state") == state:
            continue
        # The study's own times (naive local datetimes): the run spans the trial, not this repair.
        started, ended = trial.datetime_start, trial.datetime_complete
        if run is None:
            run_id = tracker.start_trial(
                trial.number, trial.params, {}, start_time=int(started.timestamp() * 1000) if started else None
            )
            for step, value in sorted(trial.intermediate_values.items()):
                tracker.log_metrics(run_id, {metric: value}, step)
        else:
            run_id = run.info.run_id
        tracker.end_trial(
            run_id,
            state,
            reason=trial.user_attrs.get("fail_reason"),
            error_text=None,
            end_time=int(ended.timestamp() * 1000) if ended else None,
        )
        runs[trial.number] = tracker.client.get_run(run_id)
    return {number: run.info.run_id for number, run in runs.items()}


def _settle(searcher: Any, callback: JobCallback, control: JobControl | None) -> None:
    """Give every trial Tune left unfinished (a stop, a time limit) its final state
    (the ledger counts a trial's end once, so one Tune already ended is left as it is)."""
    from automl.engine.study_search import TrialOutcome

    reason = control.stop_reason() if control is not None else None
    for trial_id in searcher.unfinished():
        record = callback.ledger.get(trial_id)
        if reason == StopReason.RELEASE:
            continue  # stays RUNNING: the next runner retries it
        if reason == StopReason.CANCEL:
            outcome = TrialOutcome(TrialState.FAIL, None, "the job was cancelled")
        elif searcher.reported(trial_id):
            outcome = TrialOutcome(TrialState.PRUNED, None, None)
        else:
            outcome = TrialOutcome(TrialState.FAIL, None, "the job stopped (time limit, target or patience) before it reported")
        searcher.settle(trial_id, outcome)
        if record is None:  # proposed but never started: it still gets its MLflow run
            record = callback.open_record(trial_id, searcher.trial_number(trial_id) or 0, searcher.trial_params(trial_id))
        callback.close(record, outcome)


def _log_plots(
    behind: bool,
    settings: Settings,
    study_name: str,
    tracker: Any,
    searcher: Any,
    plan: SearchPlan,
    control: JobControl | None,
) -> None:
    """Log the search plots on the job's parent run; never raises.

    ``behind`` (a search with a writer process): they are drawn by the process's plotter, from the
    durable study, while the caller already has its result. Otherwise here.
    """
    from automl.engine.write_behind import shared_plotter
    from automl.tracking.plots import log_search_plots, report_plot_failures

    if not plan.spec.tracking.plots:
        return
    if not behind:
        log_search_plots(tracker, searcher.durable_study, plan.metrics, control)
        return
    try:
        reason = control.stop_reason() if control is not None else None
    except Exception:  # noqa: BLE001 - the stop reason decides only whether to plot
        reason = None

    def report(done: Any) -> None:
        failure = done.exception()
        report_plot_failures(f"{type(failure).__name__}: {failure}" if failure else done.result(), control)

    plotter = shared_plotter().job(f"{study_name}-plots-{uuid.uuid4().hex[:8]}")
    plotter.send("open_study", settings.storage_url, study_name)
    plotter.send("open_tracking", settings.tracking_uri, settings.artifact_root, tracker.experiment_id, tracker.parent_run_id)
    plotter.send("log_plots", list(plan.metrics), reason).add_done_callback(report)
    plotter.close(wait=False)


def _first_trial_note(study: Any, tune_started: datetime) -> str | None:
    """How long after Tune started the run's first trial began (its actor's start-up, mostly)."""
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_start >= tune_started]
    return f"the first began after {(min(starts) - tune_started).total_seconds():.1f} s" if starts else None


def _with_phases(result: SearchResult, phases: PhaseClock, control: JobControl | None) -> SearchResult:
    """``result`` with the run's phase times (the summary's included), also written as a ``phases`` event."""
    phases.mark("summary")
    logger.info("search %s: %s", result.study_name, phases.line())
    if control is not None:
        control.on_event("phases", phases.line())
    return dataclasses.replace(result, phases=dict(phases.seconds))


_REGISTRY_LOCK = threading.Lock()


def _trial_dirname(trial: Any) -> str:
    return f"trial-{trial.config.get('_trial_number', 0):04d}-{trial.trial_id}"
