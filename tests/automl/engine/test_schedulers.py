"""The scheduler registry: one entry per kind, a kind's special needs as hooks on its entry."""

from __future__ import annotations

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from automl.engine.schedulers import (
    SCHEDULERS,
    JobLimits,
    SchedulerRequest,
    beside_search,
    build_scheduler,
    check_scheduler,
    no_checkpoints,
    scheduler_kind,
)
from automl.errors import SpecError

SPACE = {"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}


def request(**changes: object) -> SchedulerRequest:
    base: dict[str, object] = {"metric": "loss", "mode": "min", "max_epochs": 8, "grace_period": 1, "space": SPACE}
    return SchedulerRequest(**{**base, **changes})  # type: ignore[arg-type]


def test_every_kind_but_pbt_needs_nothing_of_the_job_and_runs_beside_the_search() -> None:
    plain = {name for name, kind in SCHEDULERS.items() if kind.check is no_checkpoints and kind.setup is beside_search}
    assert plain == set(SCHEDULERS) - {"pbt"}
    for name in plain:
        assert check_scheduler(name, request(), JobLimits(trials=4)) == 0
    setup = scheduler_kind("asha").setup(build_scheduler("asha", request()), "the searcher", "study", None, 3)  # type: ignore[arg-type]
    assert (setup.search_alg, setup.max_concurrent_trials, setup.checkpoints_to_keep) == ("the searcher", 3, 1)


def test_the_request_reaches_the_scheduler() -> None:
    asha = build_scheduler("asha", request(max_epochs=6, grace_period=2, options={"reduction_factor": 3}))
    assert isinstance(asha, ASHAScheduler)
    assert (asha._max_t, asha._reduction_factor) == (6, 3)
    assert isinstance(build_scheduler("fifo", request()), FIFOScheduler)


def test_pbt_s_check_hook_gives_the_checkpoint_interval_and_refuses_what_cannot_work() -> None:
    assert check_scheduler("pbt", request(options={"perturbation_interval": 2}), JobLimits(trials=4)) == 2
    with pytest.raises(SpecError, match=r"resources\.max_concurrent: pbt trains its whole population"):
        check_scheduler("pbt", request(), JobLimits(trials=4, max_concurrent=2))
    with pytest.raises(SpecError, match="space: the pbt scheduler perturbs hyperparameters"):
        check_scheduler("pbt", request(space=None), JobLimits(trials=4))


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown scheduler 'ashaa' \(known: asha, hyperband, median, fifo, pbt\)"):
        scheduler_kind("ashaa")
    with pytest.raises(ValueError, match="does not accept these options"):
        build_scheduler("asha", request(options={"no_such_option": 1}))
