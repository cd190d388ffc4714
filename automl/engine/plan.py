"""A job spec checked against the world once, resolved into a :class:`SearchPlan`.

What must stay true: everything a search needs from outside (the space, the data, the objective,
the metrics, the sampler's and the scheduler's options) is checked here, before anything is
written; what runs the plan (:mod:`automl.engine.run`) does not check it again, except the
cluster's resources, which can change between submit and run. A queued job stores its plan
(:func:`plan_to_json`); the runner rebuilds it with :func:`plan_from_json`, which trusts it and
checks nothing: it only imports the objective, which it must ship to the trials.

``sampler: auto`` and ``scheduler: auto`` (and ASHA's ``screen`` where the spec leaves it out) are
resolved here, once (:func:`resolve_strategy`): the plan's spec names what the job runs, and
:attr:`SearchPlan.strategy` what was asked and why; both are stored with the plan, so a job
resumed by another runner runs the same choice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.engine.auto_strategy import AUTO, StrategyChoice, choose_strategy, facts_for
from automl.errors import SpecError
from automl.spaces import SearchSpace
from automl.spec.checks import check_spec, data_config, import_objective, resolve_metrics
from automl.spec.model import JobSpec

if TYPE_CHECKING:
    from automl.engine.schedulers import SchedulerRequest
    from workers.trainable import TrialPlan

SpaceArg = SearchSpace | Mapping[str, Any] | Callable[..., Any]


@dataclass(frozen=True)
class SearchPlan:
    """A spec with everything resolved: the space Optuna samples, the metric, what each trial runs.

    Attributes:
        spec: the validated job spec.
        space: a :class:`SearchSpace`, or an Optuna define-by-run function ``f(trial) -> dict | None``.
        metrics, modes: what the study optimises (several metrics: a Pareto front).
        trial_plan: what every trial receives besides its hyperparameters.
        strategy: when the spec asked for ``auto``, or left ASHA's ``screen`` to the rule: what
            was chosen and why (``spec`` names the chosen sampler, scheduler and screen); ``None``
            when the rule decided nothing.
    """

    spec: JobSpec
    space: SearchSpace | Callable[..., Any]
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    trial_plan: TrialPlan
    strategy: StrategyChoice | None = None

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

    def scheduler_request(self) -> SchedulerRequest:
        """What the scheduler registry builds this job's scheduler from."""
        return scheduler_request(self.spec, self.space, self.metric, self.mode)


def scheduler_request(spec: JobSpec, space: Any, metric: str, mode: str) -> SchedulerRequest:
    """The scheduler's request for ``spec``: its options, the space's distributions (``None`` for
    a define-by-run space) and the parameters its trainer can change mid-training."""
    from automl.engine.schedulers import SchedulerRequest

    mutable = None  # a custom objective reads its parameters itself: any of them may change
    if spec.trainer is not None:
        from workers.trainers import trainer_card

        mutable = frozenset(trainer_card(spec.trainer.name).mutable_hyperparameters)
    return SchedulerRequest(
        metric=metric,
        mode=mode,
        max_epochs=spec.budget.max_epochs,
        grace_period=min(spec.scheduler.grace_period, spec.budget.max_epochs),
        options=dict(spec.scheduler.options),
        space=space.to_optuna() if isinstance(space, SearchSpace) else None,
        mutable=mutable,
    )


def plan_search(
    spec: JobSpec,
    *,
    base_dir: Path | None = None,
    objective: Callable[..., Any] | None = None,
    space: Callable[..., Any] | None = None,
    data_path: str | None = None,
) -> SearchPlan:
    """Resolve ``spec`` into a :class:`SearchPlan`, checking it against the outside world.

    Args:
        spec: the job spec.
        base_dir: the folder relative paths in the spec are read from (the spec file's folder).
        objective: the custom objective itself, when given in code rather than as ``module:function``.
        space: an Optuna define-by-run function, when given in code.
        data_path: the data file's local copy, when the spec names it in a bucket.

    Raises:
        SpecError: naming what is wrong, before anything is written.
    """
    from automl.engine.schedulers import JobLimits, check_scheduler
    from workers.trainable import TrialPlan

    resolved_space = check_spec(spec, base_dir=base_dir, space=space, import_objective_ref=False, data_path=data_path)
    if objective is None and spec.objective is not None:
        # Import it here and ship the function itself, by value when it is the user's own file:
        # the nodes of a cluster do not have the driver's folders.
        objective = import_objective(spec.objective, base_dir=base_dir, missing_ok=spec.code.requirements is not None)
    metrics, modes = resolve_metrics(spec, base_dir=base_dir, data_path=data_path)
    spec, strategy = resolve_strategy(spec, resolved_space, len(metrics))
    _check_sampler(spec, resolved_space, len(metrics))
    _check_warm_start(spec, resolved_space)
    # Scheduler options that cannot work are refused here; PBT says how often trials must checkpoint.
    checkpoint_interval = check_scheduler(
        spec.scheduler.name,
        scheduler_request(spec, resolved_space, metrics[0], modes[0]),
        JobLimits(trials=spec.budget.trials, max_concurrent=spec.resources.max_concurrent),
    )
    import_paths = tuple(str(p.resolve()) for p in (base_dir, Path.cwd()) if p is not None)
    trial_plan = TrialPlan(
        max_epochs=spec.budget.max_epochs,
        seed=spec.seed,
        cpus=spec.resources.cpus_per_trial,
        gpus=spec.resources.gpus_per_trial,
        metric=metrics[0],
        metrics=metrics,
        trainer=spec.trainer.name if spec.trainer else None,
        data=data_config(spec, base_dir=base_dir, data_path=data_path) if spec.trainer else None,
        objective=objective if objective is not None else spec.objective,
        import_paths=import_paths,
        checkpoint_interval=checkpoint_interval,
    )
    if objective is not None:
        _pickle_by_value_if_local(objective)
    return SearchPlan(spec, resolved_space, metrics, modes, trial_plan, strategy)


def resolve_strategy(spec: JobSpec, space: Any, n_objectives: int) -> tuple[JobSpec, StrategyChoice | None]:
    """``spec`` with ``auto`` replaced by what :func:`~automl.engine.auto_strategy.choose_strategy`
    picks for it, and ASHA's ``screen`` sized where the spec leaves it out; and the choice
    (``None``, and ``spec`` itself, when the rule decided nothing)."""
    asks_auto = AUTO in (spec.sampler.name, spec.scheduler.name)
    facts = facts_for(
        space if isinstance(space, SearchSpace) else None,
        trials=spec.budget.trials,
        # only auto's sampler rule reads the trials at once: Ray is not asked for a job that names both
        concurrency=planned_concurrency(spec) if asks_auto else 1,
        n_objectives=n_objectives,
        max_epochs=spec.budget.max_epochs,
        sampler=spec.sampler.name,
        scheduler=spec.scheduler.name,
        screen=spec.scheduler.options.get("screen"),
    )
    choice = choose_strategy(facts)
    if not choice.chose_anything:
        return spec, None
    options = {**spec.scheduler.options, "screen": choice.screen} if choice.screen else spec.scheduler.options
    resolved = spec.model_copy(
        update={
            "sampler": spec.sampler.model_copy(update={"name": choice.sampler}),
            "scheduler": spec.scheduler.model_copy(update={"name": choice.scheduler, "options": options}),
        }
    )
    return resolved, choice


def planned_concurrency(spec: JobSpec) -> int:
    """The trials the plan expects at once: ``resources.max_concurrent``, else what the CPUs allow
    (the Ray cluster's when this process is connected to one, else this machine's), at most the budget."""
    if spec.resources.max_concurrent is not None:
        at_once = spec.resources.max_concurrent
    elif "ray" in sys.modules:  # connected or not, Ray is already imported: ask it (never import it for this)
        from automl.engine.cluster import default_concurrency

        at_once = default_concurrency(spec)
    else:
        at_once = max(1, int((os.cpu_count() or 1) // spec.resources.cpus_per_trial))
    return max(1, min(at_once, spec.budget.trials))


PLAN_FORMAT = 1  # bump when a stored plan's fields change meaning; older plans are then planned again


def plan_to_json(plan: SearchPlan) -> str:
    """The plan as the queue stores it: the spec, the resolved space, metrics and trial plan.

    Raises:
        SpecError: the space is code (an Optuna define-by-run function), which a queued job cannot
            carry; the objective is stored as the spec names it (``module:function``).
    """
    trial = plan.trial_plan
    if not isinstance(plan.space, SearchSpace):
        raise SpecError("space: a queued job's space is written in its spec, not a define-by-run function")
    record = {
        "format": PLAN_FORMAT,
        "spec": plan.spec.model_dump(mode="json"),
        "space": plan.space.model_dump(mode="json"),
        "metrics": list(plan.metrics),
        "modes": list(plan.modes),
        # What auto chose and why (the spec above names the choice); absent: the spec named both.
        **({"strategy": plan.strategy.to_record()} if plan.strategy is not None else {}),
        "trial": {
            **{
                f.name: getattr(trial, f.name)
                for f in dataclasses.fields(trial)
                if f.name not in ("objective", "data", "metrics", "data_file")
            },
            "metrics": list(trial.metrics),
            "data": dataclasses.asdict(trial.data) if trial.data is not None else None,
            "import_paths": list(trial.import_paths),
        },
    }
    return json.dumps(record, sort_keys=True)


def plan_from_json(text: str, *, base_dir: Path | None = None, code_dir: Path | None = None) -> SearchPlan | None:
    """The plan :func:`plan_to_json` stored, rebuilt without checking it again (``None``: a plan of
    another format, to be planned from the spec instead).

    The objective is imported (from ``base_dir``, the folders the plan names, and the current one)
    and shipped to the trials as :func:`plan_search` ships it. With ``code_dir`` (the job's unpacked
    code package) it is imported from there alone, and the trials import from there too.
    """
    from workers.trainable import TrialPlan
    from workers.trainers.base import DataConfig

    record = json.loads(text)
    if record.get("format") != PLAN_FORMAT:
        return None
    spec = JobSpec.model_validate(record["spec"])
    trial = dict(record["trial"])
    # A job's own code package is imported by its trials alone (from the package: the working
    # directory Ray gives them, or the folder it is unpacked in here), never by the runner, which
    # may lack what its requirements install; it was imported when the job was submitted.
    objective = import_objective(spec.objective, base_dir=base_dir) if spec.objective and code_dir is None else None
    if objective is not None:
        _pickle_by_value_if_local(objective)
    import_paths = tuple(dict.fromkeys([*trial.pop("import_paths"), str(Path.cwd().resolve())]))
    if code_dir is not None:
        import_paths = (str(code_dir),)
    data = trial.pop("data")
    metrics = tuple(trial.pop("metrics"))
    trial_plan = TrialPlan(
        **trial,
        metrics=metrics,
        data=DataConfig(**data) if data is not None else None,
        objective=objective or spec.objective,
        import_paths=import_paths,
    )
    return SearchPlan(
        spec,
        SearchSpace.model_validate(record["space"]),
        tuple(record["metrics"]),
        tuple(record["modes"]),
        trial_plan,
        StrategyChoice.from_record(record.get("strategy")),
    )


def _check_sampler(spec: JobSpec, space: Any, n_objectives: int) -> None:
    """Build the sampler once, so a wrong option or a grid it cannot enumerate is refused up front."""
    from automl.engine.samplers import SamplerRequest, create_sampler, grid_size

    request = SamplerRequest(
        seed=spec.seed,
        options=spec.sampler.options,
        space=space if isinstance(space, SearchSpace) else None,
        n_objectives=n_objectives,
        budget=spec.budget.trials,
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
            raise SpecError(
                f"{field}: needs exactly the space's parameters (missing: {missing or 'none'}, unknown: {unknown or 'none'})"
            )
        for name, value in config.items():
            dist = distributions[name]
            try:
                inside = dist._contains(dist.to_internal_repr(value))
            except (ValueError, TypeError):
                inside = False
            if not inside:
                raise SpecError(f"{field}.{name}: {value!r} is outside the space ({dist})")


def _pickle_by_value_if_local(objective: Callable[..., Any]) -> None:
    """Ship a user's objective by value when its module is a script or test file a Ray worker cannot import."""
    module = sys.modules.get(getattr(objective, "__module__", "") or "")
    path = getattr(module, "__file__", None) or ""
    if module is None or module.__name__ == "__main__" or "site-packages" in path:
        return
    import ray.cloudpickle

    with contextlib.suppress(ValueError):
        ray.cloudpickle.register_pickle_by_value(module)
