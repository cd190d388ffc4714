"""The scheduler registry: a name from the spec becomes a real Ray Tune trial scheduler.

Schedulers count time in Tune's ``training_iteration``: one report of the trial context is
one iteration (one epoch for the built-in trainers), so ``max_t`` is the spec's max epochs.

Each factory gets one :class:`SchedulerRequest`. ``pbt`` (population based training) also
replaces the search algorithm for its job (Tune refuses both together): :func:`tune_setup`
gives the engine the pair to run, and :func:`check_scheduler` the checkpoint interval its
trials must keep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

    from automl.engine import SearchPlan
    from automl.spec import JobSpec
    from automl.tune_callbacks import JobCallback

TIME_ATTR = "training_iteration"


@dataclass(frozen=True)
class SchedulerRequest:
    """What a scheduler factory may use.

    Attributes:
        space: the space's Optuna distributions by name (``None`` for a define-by-run space);
            PBT perturbs within them.
        mutable: the parameters the trainer can change mid-training (``None``: any).
    """

    metric: str
    mode: str
    max_epochs: int
    grace_period: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    space: Mapping[str, Any] | None = None
    mutable: frozenset[str] | None = None


SchedulerFactory = Callable[[SchedulerRequest], "TrialScheduler"]


def _asha(req: SchedulerRequest) -> TrialScheduler:
    from ray.tune.schedulers import ASHAScheduler

    defaults = {"reduction_factor": 2}
    return ASHAScheduler(
        metric=req.metric, mode=req.mode, time_attr=TIME_ATTR, max_t=req.max_epochs, grace_period=req.grace_period,
        **{**defaults, **req.options},
    )


def _hyperband(req: SchedulerRequest) -> TrialScheduler:
    from ray.tune.schedulers import AsyncHyperBandScheduler

    # Hyperband's several brackets, run asynchronously: Tune's synchronous HyperBandScheduler
    # pauses trials and restarts them, which loses a function trial's progress without checkpoints.
    defaults = {"reduction_factor": 3, "brackets": 3}
    return AsyncHyperBandScheduler(
        metric=req.metric, mode=req.mode, time_attr=TIME_ATTR, max_t=req.max_epochs, grace_period=req.grace_period,
        **{**defaults, **req.options},
    )


def _median(req: SchedulerRequest) -> TrialScheduler:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(metric=req.metric, mode=req.mode, time_attr=TIME_ATTR, grace_period=req.grace_period, **req.options)


def _fifo(req: SchedulerRequest) -> TrialScheduler:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _pbt(req: SchedulerRequest) -> TrialScheduler:
    from automl.pbt import JobPBT, pbt_settings

    # Without a space (the spec's structural check) only the options are checked; the engine
    # builds the real one with the space (check_scheduler refuses a define-by-run space).
    settings = pbt_settings(
        req.options, max_epochs=req.max_epochs, grace_period=req.grace_period, space=req.space, mutable=req.mutable,
        space_known=req.space is not None,
    )
    return JobPBT(settings, metric=req.metric, mode=req.mode, max_epochs=req.max_epochs, space=req.space or {})


SCHEDULERS: dict[str, SchedulerFactory] = {
    "asha": _asha,
    "hyperband": _hyperband,
    "median": _median,
    "fifo": _fifo,
    "pbt": _pbt,
}


def create_scheduler(
    name: str,
    *,
    metric: str,
    mode: str,
    max_epochs: int,
    grace_period: int = 1,
    options: Mapping[str, Any] | None = None,
    space: Mapping[str, Any] | None = None,
    mutable: frozenset[str] | None = None,
) -> TrialScheduler:
    """Build the scheduler called ``name`` for trials of at most ``max_epochs`` steps, judged on ``metric``.

    Raises:
        ValueError: for an unknown name (listing the known ones) or options the scheduler refuses.
    """
    from automl.errors import SpecError

    try:
        factory = SCHEDULERS[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r} (known: {', '.join(SCHEDULERS)})") from None
    request = SchedulerRequest(metric, mode, max_epochs, min(grace_period, max_epochs), dict(options or {}), space, mutable)
    try:
        return factory(request)
    except TypeError as exc:
        raise ValueError(f"scheduler {name!r} does not accept these options: {exc}") from None
    except SpecError as exc:  # pbt's checks name the whole field; callers prefix scheduler.options themselves
        raise ValueError("; ".join(p.removeprefix("scheduler.options.") for p in exc.problems)) from None


def _trainer_mutable(spec: JobSpec) -> frozenset[str] | None:
    if spec.trainer is None:
        return None  # a custom objective reads its parameters itself: any of them may change
    from workers.trainers import get_trainer

    return frozenset(get_trainer(spec.trainer.name).mutable_hyperparameters)


def _distributions(space: Any) -> dict[str, Any] | None:
    from automl.spaces import SearchSpace

    return space.to_optuna() if isinstance(space, SearchSpace) else None


def check_scheduler(spec: JobSpec, space: Any) -> int:
    """Refuse scheduler options that cannot work, before anything is written.

    Returns:
        The checkpoint interval (in epochs) the trials must keep: ``0`` when the scheduler
        needs no training state; PBT's when it clones trials from checkpoints.

    Raises:
        SpecError: naming the field that is wrong.
    """
    if spec.scheduler.name != "pbt":
        return 0
    from automl.errors import SpecError
    from automl.pbt import pbt_settings

    if spec.resources.max_concurrent is not None and spec.resources.max_concurrent < spec.budget.trials:
        raise SpecError(
            f"resources.max_concurrent: pbt trains its whole population (budget.trials = {spec.budget.trials}) side by "
            "side as resources allow, pausing and resuming members from checkpoints; leave max_concurrent unset"
        )
    settings = pbt_settings(
        spec.scheduler.options,
        max_epochs=spec.budget.max_epochs,
        grace_period=spec.scheduler.grace_period,
        space=_distributions(space),
        mutable=_trainer_mutable(spec),
    )
    return settings.checkpoint_interval


@dataclass(frozen=True)
class TuneSetup:
    """The search algorithm and scheduler a job runs under, and what Tune must keep for them."""

    search_alg: Any
    scheduler: Any
    max_concurrent_trials: int | None
    checkpoints_to_keep: int


def tune_setup(
    plan: SearchPlan,
    searcher: Any,
    *,
    callback: JobCallback,
    study_name: str,
    concurrency: int,
) -> TuneSetup:
    """The Tune search algorithm and scheduler for ``plan``, around its ``StudySearch``.

    Every scheduler but PBT runs beside the ``StudySearch`` itself. PBT replaces it with a
    :class:`~automl.pbt.PopulationSearch` that draws the population from the same study and
    hands it every trial event; trials then keep enough checkpoints to be cloned from.
    """
    spec = plan.spec
    space = _distributions(plan.space)
    scheduler = create_scheduler(
        spec.scheduler.name,
        metric=plan.metric,
        mode=plan.mode,
        max_epochs=spec.budget.max_epochs,
        grace_period=spec.scheduler.grace_period,
        options=spec.scheduler.options,
        space=space,
        mutable=_trainer_mutable(spec),
    )
    if spec.scheduler.name != "pbt":
        return TuneSetup(searcher, scheduler, concurrency, 1)
    from automl.pbt import PopulationSearch, checkpoints_to_keep

    assert space is not None
    population = PopulationSearch(searcher, study_name=study_name, params=tuple(space), callback=callback)
    scheduler.recorder = population
    # No concurrency cap: PBT must see the whole population; Ray's resources decide how many run.
    return TuneSetup(population, scheduler, None, checkpoints_to_keep(scheduler.settings))
