"""The sampler registry's start-up rule: how many of a job's first trials TPE and GP draw at random."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from controls import RecordingControl

from automl.engine import plan_search, run_search
from automl.engine.samplers import OPTUNA_STARTUP_TRIALS, SamplerRequest, create_sampler, startup_note, startup_trials
from automl.spec import JobSpec

SPACE = {
    "x": optuna.distributions.FloatDistribution(-5.0, 10.0),
    "y": optuna.distributions.FloatDistribution(0.0, 15.0),
}


def proposals(sampler: optuna.samplers.BaseSampler, n_trials: int) -> list[dict[str, Any]]:
    """The points a sampler proposes in a sequential search of a smooth function (each told before the next)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    points = []
    for _ in range(n_trials):
        trial = study.ask(SPACE)
        study.tell(trial, (trial.params["x"] - 3.0) ** 2 + (trial.params["y"] - 2.0) ** 2)
        points.append(trial.params)
    return points


@pytest.mark.parametrize("budget", [1, 8, 16, 500, None])
def test_the_start_up_is_optunas_10_unless_the_spec_sets_it(budget: int | None) -> None:
    # Measured: a budget-sized start-up was not better (benchmarks/README.md, "Start-up trials").
    for name in ("tpe", "gp"):
        assert startup_trials(name, SamplerRequest(seed=0, budget=budget)) == OPTUNA_STARTUP_TRIALS == 10


def test_an_explicit_n_startup_trials_wins_and_other_samplers_have_none() -> None:
    assert startup_trials("tpe", SamplerRequest(seed=0, options={"n_startup_trials": 7}, budget=8)) == 7
    assert startup_trials("gp", SamplerRequest(seed=0, options={"n_startup_trials": 0}, budget=100)) == 0
    for name in ("random", "qmc", "cmaes", "nsga2"):
        assert startup_trials(name, SamplerRequest(seed=0, budget=8)) is None
        assert startup_note(name, SamplerRequest(seed=0, budget=8)) is None


@pytest.mark.parametrize("name", ["tpe", "gp"])
def test_an_8_trial_job_is_random_search_unless_the_start_up_is_shorter(name: str) -> None:
    """With Optuna's 10 start-up draws, an 8-trial TPE or GP job proposes the very points random
    search with the same seed does (the note says so); a shorter start-up lets the model propose."""
    random_points = proposals(create_sampler("random", SamplerRequest(seed=3)), 8)
    assert proposals(create_sampler(name, SamplerRequest(seed=3, budget=8)), 8) == random_points
    short = create_sampler(name, SamplerRequest(seed=3, options={"n_startup_trials": 2}, budget=8))
    points = proposals(short, 8)
    assert points[:2] == random_points[:2], "the 2 start-up draws are the seeded random sampler's"
    assert all(p != r for p, r in zip(points[2:], random_points[2:], strict=True)), "the model proposes the other 6"


def test_the_note_says_the_count_what_set_it_and_what_counts() -> None:
    assert startup_note("tpe", SamplerRequest(seed=0, budget=16)) == (
        "sampler tpe: the first 10 of 16 trials are random start-up draws (Optuna's default; "
        "sampler.options.n_startup_trials sets it); its model proposes once 10 have finished"
    )
    assert startup_note("gp", SamplerRequest(seed=0, options={"n_startup_trials": 5}, budget=16)) == (
        "sampler gp: the first 5 of 16 trials are random start-up draws (sampler.options.n_startup_trials); "
        "its model proposes once 5 have completed (trials stopped early do not count)"
    )
    assert startup_note("tpe", SamplerRequest(seed=0, budget=8)) == (
        "sampler tpe: all 8 trials are random start-up draws (n_startup_trials 10: Optuna's default; "
        "sampler.options.n_startup_trials sets it)"
    )


def quadratic(params: dict[str, Any]) -> float:
    return (params["x"] - 0.3) ** 2


@pytest.mark.slow
def test_the_job_records_its_start_up_in_its_events(tracked_home: Path, ray_session: None) -> None:
    spec = JobSpec.model_validate(
        {
            "name": "startup-event",
            "objective": f"{__name__}:quadratic",
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "metric": "value",
            "mode": "min",
            "sampler": {"name": "tpe"},
            "scheduler": {"name": "fifo"},
            "budget": {"trials": 4, "max_epochs": 1},
            "tracking": {"register_model": False},
        }
    )
    control = RecordingControl()
    result = run_search(plan_search(spec, objective=quadratic), control=control)
    assert len(result.trials) == 4
    notes = [message for kind, message in control.events if kind == "sampler"]
    assert notes == [startup_note("tpe", SamplerRequest(seed=0, budget=4))]
    assert notes[0].startswith("sampler tpe: all 4 trials are random start-up draws")
