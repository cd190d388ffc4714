"""A job spec checked once into a SearchPlan: what the plan resolves, and what it refuses up front."""

from __future__ import annotations

import pytest

from automl.engine.plan import plan_search
from automl.errors import SpecError
from automl.spaces import SearchSpace
from automl.spec import JobSpec, parse_spec

BASE = {
    "name": "plan-test",
    "trainer": {"name": "mlp", "dataset": "iris"},
    "space": "mlp-small",
    "budget": {"trials": 4, "max_epochs": 4},
}


def spec(**changes: object) -> JobSpec:
    return parse_spec({**BASE, **changes})


def test_the_plan_resolves_the_space_the_metrics_and_what_every_trial_receives() -> None:
    plan = plan_search(spec(metric=["val_accuracy", "val_loss"], mode=["max", "min"], sampler={"name": "nsga2"}))
    assert isinstance(plan.space, SearchSpace) and set(plan.optuna_space()) == set(plan.space.params)
    assert (plan.metrics, plan.modes, plan.metric, plan.multi_objective) == (("val_accuracy", "val_loss"), ("max", "min"), "val_accuracy", True)
    trial = plan.trial_plan
    assert (trial.max_epochs, trial.trainer, trial.metrics, trial.checkpoint_interval) == (4, "mlp", ("val_accuracy", "val_loss"), 0)


def test_the_scheduler_request_carries_the_space_and_what_the_trainer_can_change() -> None:
    plan = plan_search(spec(scheduler={"name": "pbt", "options": {"perturbation_interval": 2}}))
    request = plan.scheduler_request()
    assert request.space is not None and set(request.space) == set(plan.space.params)  # type: ignore[union-attr]
    assert request.mutable is not None and "learning_rate" in request.mutable
    assert plan.trial_plan.checkpoint_interval == 2, "PBT's check hook sets how often trials checkpoint"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sampler": {"name": "grid"}}, "sampler:"),  # mlp-small has floats without a step
        ({"sampler": {"name": "tpe", "options": {"no_such": 1}}}, "sampler"),
        ({"warm_start": {"configs": [{"learning_rate": 0.01}]}}, "warm_start.configs[0]"),
        ({"scheduler": {"name": "pbt"}, "resources": {"max_concurrent": 1}}, "resources.max_concurrent"),
    ],
)
def test_what_cannot_run_is_refused_before_anything_is_written(changes: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as info:
        plan_search(spec(**changes))
    assert field in str(info.value)
