"""The scheduler registry: a name from the spec becomes a real Ray Tune trial scheduler.

Schedulers count time in Tune's ``training_iteration``: one report of the trial context is
one iteration (one epoch for the built-in trainers), so ``max_t`` is the spec's max epochs.

Each entry of :data:`SCHEDULERS` is a :class:`SchedulerKind`: the factory that builds the Tune
scheduler from one :class:`SchedulerRequest`, and the hooks for a kind's special needs. ``pbt``
(population based training) uses both: its ``check`` says how often trials must checkpoint, and
its ``setup`` replaces the search algorithm (Tune refuses PBT beside one). What must stay true:
this module is a leaf of the search package (it imports no plan, spec or run), and adding a
scheduler is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

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


@dataclass(frozen=True)
class JobLimits:
    """What a scheduler's check may need of the job besides its own options."""

    trials: int
    max_concurrent: int | None = None


@dataclass(frozen=True)
class TuneSetup:
    """The search algorithm and scheduler a job runs under, and what Tune must keep for them."""

    search_alg: Any
    scheduler: Any
    max_concurrent_trials: int | None
    checkpoints_to_keep: int


SchedulerFactory = Callable[[SchedulerRequest], "TrialScheduler"]
# A kind's check of the job: the checkpoint interval (epochs) its trials must keep, 0 for none.
SchedulerCheck = Callable[[SchedulerRequest, JobLimits], int]
# Tags a trial's MLflow run: (Ray trial id, tags); what a scheduler may write beside its trials.
RunTagger = Callable[[str, dict[str, str]], None]
# A kind's way of running beside the job's StudySearch: (scheduler, searcher, study_name,
# run tagger, concurrency) -> what Tune runs.
SchedulerSetup = Callable[["TrialScheduler", Any, str, RunTagger, int], TuneSetup]


def no_checkpoints(_request: SchedulerRequest, _limits: JobLimits) -> int:
    """The check of a scheduler that needs nothing of the job: trials keep no training state."""
    return 0


def beside_search(scheduler: TrialScheduler, searcher: Any, _study_name: str, _tag_run: RunTagger, concurrency: int) -> TuneSetup:
    """The setup of a scheduler that stops trials beside the search: Tune runs the searcher itself."""
    return TuneSetup(searcher, scheduler, concurrency, 1)


@dataclass(frozen=True)
class SchedulerKind:
    """One registry entry: how the scheduler is built, and the hooks for its special needs."""

    build: SchedulerFactory
    check: SchedulerCheck = no_checkpoints
    setup: SchedulerSetup = beside_search


def _asha(req: SchedulerRequest) -> TrialScheduler:
    from ray.tune.schedulers import ASHAScheduler

    defaults = {"reduction_factor": 2}
    options = {**defaults, **req.options}
    common: dict[str, Any] = {
        "metric": req.metric,
        "mode": req.mode,
        "time_attr": TIME_ATTR,
        "max_t": req.max_epochs,
        "grace_period": req.grace_period,
    }
    if options.get("screen"):  # the first trials at the first rung stop there (automl.engine.screening)
        from automl.engine.screening import ScreeningASHA

        return ScreeningASHA(**common, **options)
    options.pop("screen", None)
    return ASHAScheduler(**common, **options)


def _hyperband(req: SchedulerRequest) -> TrialScheduler:
    from ray.tune.schedulers import AsyncHyperBandScheduler

    # Hyperband's several brackets, run asynchronously: Tune's synchronous HyperBandScheduler
    # pauses trials and restarts them, which loses a function trial's progress without checkpoints.
    defaults = {"reduction_factor": 3, "brackets": 3}
    return AsyncHyperBandScheduler(
        metric=req.metric,
        mode=req.mode,
        time_attr=TIME_ATTR,
        max_t=req.max_epochs,
        grace_period=req.grace_period,
        **{**defaults, **req.options},
    )


def _median(req: SchedulerRequest) -> TrialScheduler:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(metric=req.metric, mode=req.mode, time_attr=TIME_ATTR, grace_period=req.grace_period, **req.options)


def _fifo(req: SchedulerRequest) -> TrialScheduler:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _pbt(req: SchedulerRequest) -> TrialScheduler:
    from automl.engine.pbt import build_pbt

    return build_pbt(
        req.options,
        metric=req.metric,
        mode=req.mode,
        max_epochs=req.max_epochs,
        grace_period=req.grace_period,
        space=req.space,
        mutable=req.mutable,
    )


def _pbt_check(req: SchedulerRequest, limits: JobLimits) -> int:
    from automl.engine.pbt_options import check_pbt

    return check_pbt(
        req.options,
        max_epochs=req.max_epochs,
        grace_period=req.grace_period,
        space=req.space,
        mutable=req.mutable,
        trials=limits.trials,
        max_concurrent=limits.max_concurrent,
    )


def _pbt_setup(scheduler: TrialScheduler, searcher: Any, study_name: str, tag_run: RunTagger, concurrency: int) -> TuneSetup:
    from automl.engine.pbt import JobPBT, population_search

    assert isinstance(scheduler, JobPBT)  # the registry builds PBT's entry with JobPBT
    population, keep = population_search(scheduler, searcher, study_name, tag_run)
    # No concurrency cap: PBT must see the whole population; Ray's resources decide how many run.
    return TuneSetup(population, scheduler, None, keep)


SCHEDULERS: dict[str, SchedulerKind] = {
    "asha": SchedulerKind(_asha),
    "hyperband": SchedulerKind(_hyperband),
    "median": SchedulerKind(_median),
    "fifo": SchedulerKind(_fifo),
    # Tune's PBT clones trials from checkpoints and chooses the population itself.
    "pbt": SchedulerKind(_pbt, check=_pbt_check, setup=_pbt_setup),
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
    request = SchedulerRequest(metric, mode, max_epochs, min(grace_period, max_epochs), dict(options or {}), space, mutable)
    return build_scheduler(name, request)


def build_scheduler(name: str, request: SchedulerRequest) -> TrialScheduler:
    """Build the scheduler called ``name`` from a whole request (see :func:`create_scheduler`).

    Raises:
        ValueError: for an unknown name (listing the known ones) or options the scheduler refuses.
    """
    from automl.errors import SpecError

    kind = scheduler_kind(name)
    try:
        return kind.build(request)
    except TypeError as exc:
        raise ValueError(f"scheduler {name!r} does not accept these options: {exc}") from None
    except SpecError as exc:  # pbt's checks name the whole field; callers prefix scheduler.options themselves
        raise ValueError("; ".join(p.removeprefix("scheduler.options.") for p in exc.problems)) from None


def scheduler_kind(name: str) -> SchedulerKind:
    """The registry entry called ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r} (known: {', '.join(SCHEDULERS)})") from None


def check_scheduler(name: str, request: SchedulerRequest, limits: JobLimits) -> int:
    """Refuse what the scheduler cannot work with, before anything is written.

    Returns:
        The checkpoint interval (in epochs) the trials must keep: ``0`` when the scheduler needs
        no training state (PBT's when it clones trials from checkpoints).

    Raises:
        SpecError: naming the field that is wrong.
    """
    return scheduler_kind(name).check(request, limits)
