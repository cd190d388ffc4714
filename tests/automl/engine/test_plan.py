"""A job spec checked once into a SearchPlan: what the plan resolves, and what it refuses up front."""

from __future__ import annotations

import dataclasses
import json

import pytest

from automl.engine.plan import plan_from_json, plan_search, plan_to_json
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
    assert (plan.metrics, plan.modes, plan.metric, plan.multi_objective) == (
        ("val_accuracy", "val_loss"),
        ("max", "min"),
        "val_accuracy",
        True,
    )
    trial = plan.trial_plan
    assert (trial.max_epochs, trial.trainer, trial.metrics, trial.checkpoint_interval) == (
        4,
        "mlp",
        ("val_accuracy", "val_loss"),
        0,
    )


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


QUADRATIC = """
def objective(params, ctx):
    return (params["x"] - 0.3) ** 2
"""


def test_a_stored_plan_is_the_plan_it_was_made_from(tmp_path, monkeypatch) -> None:
    (tmp_path / "quad_objective.py").write_text(QUADRATIC)
    monkeypatch.syspath_prepend(str(tmp_path))
    custom = parse_spec(
        {
            "name": "stored",
            "objective": "quad_objective:objective",
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            "metric": "loss",
            "scheduler": {"name": "pbt", "options": {"perturbation_interval": 2}},
            "budget": {"trials": 4, "max_epochs": 4},
        }
    )
    for original in (
        plan_search(spec(metric=["val_accuracy", "val_loss"], mode=["max", "min"])),
        plan_search(custom, base_dir=tmp_path),
    ):
        text = plan_to_json(original)
        json.loads(text)  # plain JSON, as the queue stores it
        rebuilt = plan_from_json(text, base_dir=tmp_path)
        assert rebuilt is not None
        assert (rebuilt.spec, rebuilt.space, rebuilt.metrics, rebuilt.modes) == (
            original.spec,
            original.space,
            original.metrics,
            original.modes,
        )
        assert dataclasses.replace(rebuilt.trial_plan, objective=None, import_paths=()) == dataclasses.replace(
            original.trial_plan, objective=None, import_paths=()
        )
        assert set(original.trial_plan.import_paths) <= set(rebuilt.trial_plan.import_paths)
        if original.spec.objective is not None:
            assert callable(rebuilt.trial_plan.objective) and rebuilt.trial_plan.objective({"x": 0.3}, None) == 0.0
            assert rebuilt.trial_plan.checkpoint_interval == 2
    assert plan_from_json(json.dumps({"format": 0})) is None, "a plan of another format is planned again from its spec"


def test_a_define_by_run_space_cannot_be_queued_as_a_plan() -> None:
    def define_by_run(trial):
        trial.suggest_float("x", 0, 1)

    plan = plan_search(
        parse_spec({"name": "f", "objective": f"{__name__}:quadratic", "space": "define-by-run:define_by_run", "metric": "loss"}),
        objective=quadratic,
        space=define_by_run,
    )
    with pytest.raises(SpecError, match="space"):
        plan_to_json(plan)


def quadratic(params: dict) -> float:
    return (params["x"] - 0.3) ** 2
