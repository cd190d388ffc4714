"""The Python API: search a user's own objective, or run a job spec, from code."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.engine.auto_strategy import DEFAULT_SAMPLER, DEFAULT_SCHEDULER
from automl.errors import SpecError
from automl.spaces import SearchSpace
from automl.spec import JobSpec, load_spec, parse_spec

if TYPE_CHECKING:
    from automl.engine.callbacks import ProgressSink
    from automl.results import SearchResult

Objective = Callable[..., Any]


def search(
    objective: Objective,
    space: str | Mapping[str, Any] | SearchSpace | Callable[..., Any],
    *,
    n_trials: int = 20,
    metric: str | list[str] = "loss",
    mode: str | list[str] = "min",
    max_steps: int = 10,
    name: str = "search",
    sampler: str = DEFAULT_SAMPLER,
    sampler_options: Mapping[str, Any] | None = None,
    scheduler: str = DEFAULT_SCHEDULER,
    grace_period: int = 1,
    scheduler_options: Mapping[str, Any] | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent: int | None = None,
    time_limit_s: float | None = None,
    trial_timeout_s: float | None = None,
    seed: int = 0,
    max_retries: int = 0,
    target: float | None = None,
    patience: int | None = None,
    warm_start: list[Mapping[str, Any]] | None = None,
    warm_start_from: str | SearchResult | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    register_model: bool = True,
    plots: bool = True,
    progress: ProgressSink | bool = False,
    code_dir: str | Path | bool | None = None,
) -> SearchResult:
    """Search the hyperparameters of ``objective`` with the same engine as the CLI.

    The objective is a plain function of its hyperparameters. It may take the trial context as
    a second argument to report metrics per step (``ctx.report(loss=..., step=...)``), which
    lets the scheduler stop poor trials early, and ``ctx.save_model(model)`` to have the best
    trial's model logged and registered. Its return value, if any, is the final ``metric``::

        def objective(params, ctx):
            for step in range(1, ctx.max_epochs + 1):
                loss = (params["x"] - 2) ** 2 / step
                ctx.report(loss=loss, step=step)

        result = automl.search(objective, {"x": {"type": "float", "low": -5, "high": 5}}, n_trials=20)
        result.best_params  # {'x': 2.01...}

    Args:
        objective: ``f(params)`` or ``f(params, ctx)``; returns the final metric or ``None``.
        space: a preset name or YAML path, a mapping of parameters (our format, Optuna
            distributions, or Ray Tune domains such as ``tune.loguniform(1e-4, 1e-1)`` and
            ``tune.choice([16, 32])``), a :class:`SearchSpace`, or an Optuna define-by-run function
            ``f(trial) -> dict | None`` for conditional spaces.
        n_trials: how many trials to run.
        metric, mode: the metric to optimise and its direction (``min`` or ``max``); or lists,
            one direction per metric, for a multi-objective search (the result has a Pareto front).
        max_steps: the most steps one trial reports (the scheduler's ``max_t``).
        name: the job's name (the MLflow experiment unless ``experiment`` is given).
        sampler, sampler_options: the Optuna sampler by name (``tpe``, ``random``, ``gp``, ``qmc``...),
            or ``auto`` to have one picked for the space, budget, concurrency and objectives
            (docs/job-spec.md, "Choosing the strategy: auto"; ``auto`` takes no options).
        scheduler, grace_period, scheduler_options: the Ray Tune scheduler by name (``asha``,
            ``hyperband``, ``median``, ``pbt``, ``fifo``, or ``auto``) and its options, as in a job file's
            ``scheduler.options`` (e.g. ``{"perturbation_interval": 2, "synch": True}`` for PBT). What
            ``auto`` chose, and why, is on the result (``sampler``, ``scheduler``, ``strategy_reason``);
            so is ASHA's ``screen`` where it was sized for the search (docs/job-spec.md, "ASHA screens
            its first rung"; ``{"screen": 0}`` turns it off).
        cpus_per_trial, gpus_per_trial: what each trial asks Ray for (fractions of a GPU allowed).
        max_concurrent: trials running at once (default: as many as the CPUs allow).
        time_limit_s: stop starting trials after this many seconds.
        trial_timeout_s: stop a trial that runs longer than this and record it failed ("timed out").
        seed: the job seed (sampler and per-trial seeds).
        max_retries: times Ray Tune retries a trial that raised.
        target: stop the search once a trial reaches this value of ``metric``.
        patience: stop the search after this many finished trials without a new best.
        warm_start: configurations to evaluate first (each names every parameter of the space).
        warm_start_from: an earlier search (its result, or its study name) whose best trials run first.
        experiment, tracking_uri: where MLflow records the search.
        register_model: register the best model (if the objective saved one) in the Model Registry.
        plots: draw the search plots on the search's MLflow run when it ends (drawn by a helper
            process after the result is returned; ``False`` for many small searches).
        progress: ``True`` for a progress bar on the terminal, or a :class:`ProgressSink`.

    On a Ray cluster (``RAY_ADDRESS``) the objective's module folder travels to every node as
    Ray's ``working_dir``, so the modules it imports need not be installed there; ``code_dir``
    names another folder, or ``False`` ships none (see docs/service.md, "Jobs that travel").

    Returns:
        The :class:`~automl.results.SearchResult`.

    Raises:
        SpecError: an argument is invalid (named in the message); nothing was written.
    """
    from automl.engine import plan_search, run_search
    from automl.settings import resolve_settings
    from automl.shipping.travel import ship_caller_code

    space_field, define_by_run = _space_field(space)
    spec = parse_spec(
        {
            "name": name,
            "objective": _objective_ref(objective),
            "space": space_field,
            "metric": list(metric) if isinstance(metric, (list, tuple)) else metric,
            "mode": list(mode) if isinstance(mode, (list, tuple)) else mode,
            "sampler": {"name": sampler, "options": dict(sampler_options or {})},
            "scheduler": {"name": scheduler, "grace_period": grace_period, "options": dict(scheduler_options or {})},
            "budget": {
                "trials": n_trials,
                "max_epochs": max_steps,
                "time_limit_s": time_limit_s,
                "trial_timeout_s": trial_timeout_s,
                "target": target,
                "patience": patience,
            },
            "warm_start": {
                "configs": [dict(c) for c in warm_start or []],
                "from_study": getattr(warm_start_from, "study_name", warm_start_from),
            },
            "resources": {
                "cpus_per_trial": cpus_per_trial,
                "gpus_per_trial": gpus_per_trial,
                "max_concurrent": max_concurrent,
            },
            "seed": seed,
            "max_retries": max_retries,
            "tracking": {
                "experiment": experiment,
                "tracking_uri": tracking_uri,
                "register_model": register_model,
                "plots": plots,
            },
        },
        source="automl.search()",
    )
    plan = plan_search(spec, objective=objective, space=define_by_run)
    settings = resolve_settings(tracking_uri=spec.tracking.tracking_uri)
    provenance = ship_caller_code(objective, code_dir, settings)
    return run_search(plan, settings=settings, progress=_progress_sink(progress), provenance=provenance)


def run_job(path: str | Path, *, progress: ProgressSink | bool = False) -> SearchResult:
    """Run the job spec at ``path`` in this process, as ``automl run`` does (without the job queue)."""
    return run_spec(load_spec(path), base_dir=Path(path).resolve().parent, progress=progress)


def run_spec(spec: JobSpec, *, base_dir: Path | None = None, progress: ProgressSink | bool = False) -> SearchResult:
    """Run an already parsed :class:`JobSpec`; its data file (``data:``, or a trainer's file) reaches
    the trials wherever they run, and its hash is recorded on the job's MLflow run."""
    from automl.engine import plan_search, run_search
    from automl.settings import resolve_settings
    from automl.shipping.data import read_data_file
    from automl.shipping.provenance import Provenance
    from automl.shipping.travel import attach_local_data

    data = read_data_file(spec, base_dir)
    plan = plan_search(spec, base_dir=base_dir, data_path=data.local_path if data is not None else None)
    settings = resolve_settings(tracking_uri=spec.tracking.tracking_uri)
    plan = attach_local_data(plan, data, settings)
    provenance = Provenance(data_sha256=data.sha256, data_source=data.source) if data is not None else None
    return run_search(plan, settings=settings, progress=_progress_sink(progress), provenance=provenance)


def _space_field(space: Any) -> tuple[Any, Callable[..., Any] | None]:
    """The space as the spec records it, and the define-by-run function if that is what was given."""
    if isinstance(space, SearchSpace):
        return space.model_dump(mode="json", exclude_none=True), None
    if isinstance(space, (str, Path)):
        return str(space), None
    if isinstance(space, Mapping):
        if space and all(_is_tune_domain(v) or _is_optuna_distribution(v) for v in space.values()):
            from automl.spaces import space_from_distributions

            return space_from_distributions(_as_optuna(space)).model_dump(mode="json", exclude_none=True), None
        if any(_is_tune_domain(v) or _is_optuna_distribution(v) for v in space.values()):
            mixed = sorted(k for k, v in space.items() if not (_is_tune_domain(v) or _is_optuna_distribution(v)))
            raise SpecError(
                f"space: give every parameter as a Tune domain or an Optuna distribution, or none; {', '.join(mixed)} are not"
            )
        return dict(space), None
    if callable(space):
        return f"define-by-run:{getattr(space, '__qualname__', 'function')}", space
    raise SpecError(f"space: expected a preset name, a mapping or a define-by-run function, got {type(space).__name__}")


def _is_optuna_distribution(value: Any) -> bool:
    return type(value).__module__.startswith("optuna.distributions")


def _is_tune_domain(value: Any) -> bool:
    """A Ray Tune search-space domain (``tune.uniform``, ``tune.loguniform``, ``tune.choice``, ``tune.randint``...)."""
    return type(value).__module__.startswith("ray.tune.search.sample")


def _as_optuna(space: Mapping[str, Any]) -> dict[str, Any]:
    """Tune domains as Optuna distributions, converted by Ray's own Optuna searcher (its bounds rules:
    ``tune.randint``'s upper bound is exclusive, ``tune.qrandint``'s inclusive); Optuna's stay."""
    tune_part = {k: v for k, v in space.items() if _is_tune_domain(v)}
    converted: dict[str, Any] = {}
    if tune_part:
        from ray.tune.search.optuna import OptunaSearch

        try:
            converted = OptunaSearch.convert_search_space(tune_part)
        except ValueError as exc:  # e.g. tune.randn: no bounds for Optuna
            raise SpecError(f"space: {exc}") from None
    return {k: converted.get(k, v) for k, v in space.items()}


def _objective_ref(objective: Objective) -> str:
    if not callable(objective):
        raise SpecError(f"objective: expected a function, got {type(objective).__name__}")
    module = getattr(objective, "__module__", None) or "__main__"
    qualname = str(getattr(objective, "__qualname__", None) or getattr(objective, "__name__", None) or "objective")
    safe = ".".join(part for part in qualname.split(".") if part.isidentifier()) or "objective"
    return f"{module}:{safe}"


def _progress_sink(progress: ProgressSink | bool) -> ProgressSink | None:
    if progress is True:
        from automl.cli.progress import RichProgress

        return RichProgress()
    return progress or None
