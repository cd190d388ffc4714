"""The spec's side of ``sampler: auto`` and ``scheduler: auto``: accepted by name, refused with options, default unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from automl.engine import auto_strategy as rules
from automl.engine.plan import plan_search
from automl.errors import SpecError
from automl.spec import JobSpec, parse_spec

NUMERIC = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def quadratic(params: dict[str, Any]) -> float:
    return (params["x"] - 0.3) ** 2


def auto_spec(**changes: Any) -> JobSpec:
    return parse_spec(
        {
            "name": "auto-spec",
            "objective": f"{__name__}:quadratic",
            "space": NUMERIC,
            "metric": "value",
            "sampler": {"name": "auto"},
            "scheduler": {"name": "auto"},
            **changes,
        }
    )


def test_the_default_stays_tpe_and_asha() -> None:
    spec = parse_spec({"name": "d", "objective": f"{__name__}:quadratic", "space": NUMERIC, "metric": "value"})
    assert (spec.sampler.name, spec.scheduler.name) == rules.DEFAULT_STRATEGY == ("tpe", "asha")
    assert plan_search(spec, objective=quadratic).strategy is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"sampler": {"name": "auto", "options": {"n_startup_trials": 3}}},
            "sampler.options: sampler auto picks the sampler itself, so it takes no options: name the sampler to give it options",
        ),
        (
            {"scheduler": {"name": "auto", "options": {"reduction_factor": 3}}},
            "scheduler.options: scheduler auto picks the scheduler itself, so it takes no options: name the scheduler",
        ),
        (
            {"sampler": {"name": "autoo"}},
            "sampler.name: unknown sampler 'autoo' (known: tpe, random, gp, cmaes, qmc, grid, nsga2, auto)",
        ),
        ({"scheduler": {"name": "auto", "grace_period": 2}}, None),  # grace_period is asha's if auto picks it
    ],
)
def test_auto_with_options_is_refused_naming_the_field(changes: dict[str, Any], message: str | None) -> None:
    if message is None:
        assert auto_spec(**changes).scheduler.grace_period == 2
        return
    with pytest.raises(SpecError) as info:
        auto_spec(**changes)
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(message)
