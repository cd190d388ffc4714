"""Each sampler and scheduler in a small real search; warm starts run first; jobs stop early."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

import automl
from automl.errors import SpecError
from workers.context import TrialContext

pytestmark = pytest.mark.slow
# A real search here starts in a state directory whose MLflow store is made (``tracked_home``): MLflow
# makes its schema in seconds, once per state directory, and these tests are about the search.
SPACE = {"x": {"type": "float", "low": -2, "high": 2}, "y": {"type": "float", "low": -2, "high": 2}}
# Every real search here runs with plots=False: drawing the end-of-job plots costs seconds of CPU a search, and
# no test here looks at them (tests/automl/tracking/test_plots.py and engine/test_phases.py do).
GRID_SPACE = {"x": {"type": "float", "low": -1, "high": 1, "step": 0.5}, "k": {"type": "categorical", "choices": [1, 2]}}


def quadratic(params: dict) -> float:
    return (params["x"] - 0.5) ** 2 + (params.get("y", 0.0) + 0.5) ** 2 + params.get("k", 0)


def curve(params: dict, ctx: TrialContext) -> None:
    for step in range(1, ctx.max_epochs + 1):
        ctx.report(loss=abs(params["x"]) + 1.0 / step, step=step)


@pytest.mark.parametrize("sampler", ["tpe", "random", "gp", "cmaes", "qmc"])
@pytest.mark.usefixtures("tracked_home")
def test_sampler_runs_a_real_search(sampler: str, automl_home: Path, ray_session: None) -> None:
    result = automl.search(quadratic, SPACE, n_trials=8, max_steps=1, sampler=sampler, name=f"s-{sampler}", seed=3, plots=False)
    assert result.state_counts == {"COMPLETE": 8}
    assert result.best_value is not None and result.best_value < 8


@pytest.mark.usefixtures("tracked_home")
def test_grid_sampler_enumerates_the_grid(automl_home: Path, ray_session: None) -> None:
    result = automl.search(
        quadratic, GRID_SPACE, n_trials=10, max_steps=1, sampler="grid", name="grid", max_concurrent=1, plots=False
    )
    points = {(t.params["x"], t.params["k"]) for t in result.trials}
    assert len(points) == 10, "every grid point once"
    assert points == {(x, k) for x in (-1.0, -0.5, 0.0, 0.5, 1.0) for k in (1, 2)}
    assert result.best_params == {"x": 0.5, "k": 1}


def test_grid_refuses_a_continuous_parameter_before_writing(automl_home: Path) -> None:
    with pytest.raises(SpecError, match=r"sampler: the grid sampler cannot enumerate space.params.x: give it a step"):
        automl.search(quadratic, SPACE, sampler="grid")
    with pytest.raises(SpecError, match=r"budget\.trials: the grid has 10 points, fewer than the 11"):
        automl.search(quadratic, GRID_SPACE, sampler="grid", n_trials=11)
    with pytest.raises(SpecError, match="sampler: sampler 'tpe' does not accept these options"):
        automl.search(quadratic, SPACE, sampler_options={"no_such_option": 1})
    assert not automl_home.exists()


@pytest.mark.parametrize("scheduler", ["asha", "hyperband", "median", "fifo"])
@pytest.mark.usefixtures("tracked_home")
def test_scheduler_runs_a_real_search(scheduler: str, automl_home: Path, ray_session: None) -> None:
    result = automl.search(
        curve,
        {"x": {"type": "float", "low": 0, "high": 1}},
        n_trials=8,
        max_steps=6,
        scheduler=scheduler,
        name=f"sched-{scheduler}",
        sampler="random",
        max_concurrent=2,
        seed=4,
        plots=False,
    )
    states = result.state_counts
    assert sum(states.values()) == 8 and set(states) <= {"COMPLETE", "PRUNED"}
    assert states.get("COMPLETE", 0) >= 1
    if scheduler == "fifo":
        assert states == {"COMPLETE": 8}, "FIFO never stops a trial early"


@pytest.mark.usefixtures("tracked_home")
def test_warm_start_configurations_run_first(automl_home: Path, ray_session: None) -> None:
    configs = [{"x": 0.5, "y": -0.5}, {"x": -1.0, "y": 1.0}]
    first = automl.search(
        quadratic, SPACE, n_trials=5, max_steps=1, warm_start=configs, name="warm", max_concurrent=1, seed=1, plots=False
    )
    by_number = sorted(first.trials, key=lambda t: t.number)
    assert [t.params for t in by_number[:2]] == configs
    assert first.best_value == pytest.approx(0.0) and first.best_params == configs[0]

    # A second search starts from the first one's best trials.
    second = automl.search(
        quadratic, SPACE, n_trials=3, max_steps=1, warm_start_from=first, name="warm-again", max_concurrent=1, seed=2, plots=False
    )
    assert min(second.trials, key=lambda t: t.number).params == configs[0]


def test_warm_start_outside_the_space_is_refused(automl_home: Path) -> None:
    with pytest.raises(SpecError, match=r"warm_start.configs\[0\].x: 9 is outside the space"):
        automl.search(quadratic, SPACE, warm_start=[{"x": 9, "y": 0}])
    with pytest.raises(SpecError, match=r"warm_start.configs\[0\]: needs exactly the space's parameters"):
        automl.search(quadratic, SPACE, warm_start=[{"x": 0}])


@pytest.mark.usefixtures("tracked_home")
def test_job_stops_at_its_target(automl_home: Path, ray_session: None) -> None:
    result = automl.search(
        quadratic,
        SPACE,
        n_trials=30,
        max_steps=1,
        target=0.01,
        name="target",
        max_concurrent=1,
        warm_start=[{"x": 1.5, "y": 1.0}, {"x": 0.5, "y": -0.5}],
        plots=False,
    )
    assert len(result.trials) < 30
    assert result.best_value == pytest.approx(0.0)


@pytest.mark.usefixtures("tracked_home")
def test_job_stops_when_patience_runs_out(automl_home: Path, ray_session: None) -> None:
    result = automl.search(
        quadratic,
        SPACE,
        n_trials=40,
        max_steps=1,
        patience=3,
        name="patience",
        max_concurrent=1,
        warm_start=[{"x": 0.5, "y": -0.5}],
        seed=5,
        plots=False,
    )
    complete = [t for t in result.trials if t.state == "COMPLETE"]
    assert len(complete) <= 5, "the first trial is the optimum; three without a new best stop the job"


def two_objectives(params: dict) -> tuple[float, float]:
    return params["x"] ** 2, (params["x"] - 1.0) ** 2


@pytest.mark.usefixtures("tracked_home")
def test_multi_objective_search_returns_the_pareto_front(automl_home: Path, ray_session: None) -> None:
    result = automl.search(
        two_objectives,
        {"x": {"type": "float", "low": -1, "high": 2}},
        n_trials=16,
        max_steps=1,
        metric=["a", "b"],
        mode=["min", "min"],
        sampler="nsga2",
        name="pareto",
        seed=7,
        plots=False,
    )
    assert result.metrics == ("a", "b") and result.state_counts == {"COMPLETE": 16}
    front = {t.number for t in result.pareto_front}

    def dominated(t) -> bool:
        return any(o.values[0] <= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values for o in result.trials)

    assert front == {t.number for t in result.trials if not dominated(t)}
    # Every trial with x in [0, 1] is on the front: nothing beats it on both objectives.
    assert {t.number for t in result.trials if 0.0 <= t.params["x"] <= 1.0} <= front
    client = MlflowClient(tracking_uri=result.tracking_uri)
    assert "job/pareto_front.json" in [a.path for a in client.list_artifacts(result.parent_run_id, "job")]


@pytest.mark.usefixtures("tracked_home")
def test_trainer_accuracy_against_model_size(tmp_path: Path, automl_home: Path, ray_session: None) -> None:
    spec = automl.JobSpec.model_validate(
        {
            "name": "small-and-good",
            "trainer": {"name": "mlp", "dataset": "iris"},
            "space": "mlp",
            "metric": ["val_accuracy", "n_params"],
            "mode": ["max", "min"],
            "sampler": {"name": "nsga2"},
            "scheduler": {"name": "fifo"},
            "budget": {"trials": 6, "max_epochs": 2},
            "seed": 1,
            "tracking": {"plots": False},
        }
    )
    result = automl.run_spec(spec)
    assert result.pareto_front and result.model_uri is not None
    sizes = {t.values[1] for t in result.pareto_front}
    assert all(size > 0 for size in sizes)
    best = next(t for t in result.trials if t.number == result.best_trial_number)
    assert best in result.pareto_front, "the logged model is the front's best on the primary metric"


def test_single_objective_sampler_refuses_several_metrics(automl_home: Path) -> None:
    with pytest.raises(SpecError, match="sampler: sampler 'gp' optimises one objective"):
        automl.search(
            two_objectives, {"x": {"type": "float", "low": 0, "high": 1}}, metric=["a", "b"], mode=["min", "min"], sampler="gp"
        )
