"""The scheduler registry: a name from the spec becomes a real Ray Tune trial scheduler.

Schedulers count time in Tune's ``training_iteration``: one report of the trial context is
one iteration (one epoch for the built-in trainers), so ``max_t`` is the spec's max epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

SchedulerFactory = Callable[[str, str, int, int, Mapping[str, Any]], "TrialScheduler"]
TIME_ATTR = "training_iteration"


def _asha(metric: str, mode: str, max_epochs: int, grace_period: int, options: Mapping[str, Any]) -> TrialScheduler:
    from ray.tune.schedulers import ASHAScheduler

    defaults = {"reduction_factor": 2}
    return ASHAScheduler(metric=metric, mode=mode, time_attr=TIME_ATTR, max_t=max_epochs, grace_period=grace_period, **{**defaults, **options})


def _hyperband(metric: str, mode: str, max_epochs: int, grace_period: int, options: Mapping[str, Any]) -> TrialScheduler:
    from ray.tune.schedulers import AsyncHyperBandScheduler

    # Hyperband's several brackets, run asynchronously: Tune's synchronous HyperBandScheduler
    # pauses trials and restarts them, which loses a function trial's progress without checkpoints.
    defaults = {"reduction_factor": 3, "brackets": 3}
    return AsyncHyperBandScheduler(
        metric=metric, mode=mode, time_attr=TIME_ATTR, max_t=max_epochs, grace_period=grace_period, **{**defaults, **options}
    )


def _median(metric: str, mode: str, max_epochs: int, grace_period: int, options: Mapping[str, Any]) -> TrialScheduler:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(metric=metric, mode=mode, time_attr=TIME_ATTR, grace_period=grace_period, **options)


def _fifo(metric: str, mode: str, max_epochs: int, grace_period: int, options: Mapping[str, Any]) -> TrialScheduler:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS: dict[str, SchedulerFactory] = {
    "asha": _asha,
    "hyperband": _hyperband,
    "median": _median,
    "fifo": _fifo,
}


def create_scheduler(
    name: str,
    *,
    metric: str,
    mode: str,
    max_epochs: int,
    grace_period: int = 1,
    options: Mapping[str, Any] | None = None,
) -> TrialScheduler:
    """Build the scheduler called ``name`` for trials of at most ``max_epochs`` steps, judged on ``metric``.

    Raises:
        ValueError: for an unknown name (listing the known ones) or options the scheduler refuses.
    """
    try:
        factory = SCHEDULERS[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r} (known: {', '.join(SCHEDULERS)})") from None
    try:
        return factory(metric, mode, max_epochs, min(grace_period, max_epochs), dict(options or {}))
    except TypeError as exc:
        raise ValueError(f"scheduler {name!r} does not accept these options: {exc}") from None
