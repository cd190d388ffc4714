"""The Python API on custom objectives: known optimum found, failures recorded, records agree."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

import automl
from automl.errors import SpecError
from workers.context import TrialContext

pytestmark = pytest.mark.slow
# The first search below starts in a fresh state directory, as a first run does; the others in one whose
# MLflow store is made (``tracked_home``): MLflow makes its schema in seconds, once per state directory.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}  # automl.states.mlflow_status


def bowl(params: dict, ctx: TrialContext) -> float:
    """A bowl with its minimum 0 at x=2, y=-1; reports a decreasing loss every step."""
    value = (params["x"] - 2.0) ** 2 + (params["y"] + 1.0) ** 2
    for step in range(1, ctx.max_epochs + 1):
        ctx.report(loss=value + 1.0 / step, step=step)
    return value


def test_search_finds_a_known_optimum(automl_home: Path, ray_session: None) -> None:
    space = {"x": {"type": "float", "low": -5, "high": 5}, "y": {"type": "float", "low": -5, "high": 5}}
    result = automl.search(bowl, space, n_trials=40, max_steps=3, metric="loss", mode="min", name="bowl", seed=1)
    assert result.best_params is not None and result.best_value is not None
    assert abs(result.best_params["x"] - 2.0) < 1.0
    assert abs(result.best_params["y"] + 1.0) < 1.0
    assert result.best_value - 1.0 / 3 < 0.5  # the last step's loss: the bowl's value + 1/3
    assert len(result.trials) == 40
    assert result.parent_run_id and len(result.run_ids) == 40
    frame = result.trials_frame()
    assert {"number", "state", "value_loss", "params_x", "params_y", "run_id"} <= set(frame.columns)
    # The same study is there for Optuna itself.
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{automl_home / 'studies.db'}")
    assert study.best_value == pytest.approx(result.best_value)
    # The frame has what Optuna's own has (durations, user attributes, intermediate values), by the same names.
    attrs = (
        "number",
        "value",
        "datetime_start",
        "datetime_complete",
        "duration",
        "params",
        "user_attrs",
        "state",
        "intermediate_values",
    )
    optunas = study.trials_dataframe(attrs=attrs)
    assert list(frame.columns) == [*optunas.columns, "run_id", "fail_reason"]
    # Durations are the driver's (when Tune started and ended each trial); the stored study's stamps
    # are its writer's, made a little later, so the two differ by the write's delay, not by much.
    assert (frame["duration"].dt.total_seconds() > 0).all()
    assert (frame["datetime_start"] <= frame["datetime_complete"]).all()
    assert ((frame["duration"] - optunas["duration"]).abs().dt.total_seconds() < 5).all()
    steps = [c for c in frame.columns if c.startswith("intermediate_values_")]
    assert steps and frame[steps].equals(optunas[steps])
    assert frame["run_id"].notna().all()


def flaky(params: dict) -> float | None:
    """Raises, returns NaN, returns nothing, or returns a value, by region: a job must survive all."""
    if params["x"] < -0.5:
        raise RuntimeError(f"diverged at x={params['x']:.3f}")
    if params["x"] < 0.0:
        return math.nan
    if params["x"] < 0.25:
        return None  # reports no metric at all
    return params["x"]


@pytest.mark.usefixtures("tracked_home")
def test_failing_trials_are_recorded_and_the_job_goes_on(automl_home: Path, ray_session: None) -> None:
    result = automl.search(
        flaky,
        {"x": {"type": "float", "low": -1, "high": 1}},
        n_trials=16,
        max_steps=1,
        metric="value",
        mode="max",
        name="flaky",
        sampler="random",
        seed=3,
        plots=False,  # drawing them costs seconds; tests/automl/tracking/test_plots.py checks them
    )
    states = result.state_counts
    assert states.get("FAIL", 0) >= 2 and states.get("COMPLETE", 0) >= 2, states
    assert result.best_value is not None and result.best_value >= 0
    failed = [t for t in result.trials if t.state == "FAIL"]
    assert any("RuntimeError: diverged" in (t.fail_reason or "") for t in failed)
    assert any("reported no 'value'" in (t.fail_reason or "") for t in failed)
    assert any("is nan" in (t.fail_reason or "") for t in failed)
    assert all(t.params["x"] >= 0.25 for t in result.trials if t.state == "COMPLETE")
    # Optuna and MLflow agree on every trial's state.
    client = MlflowClient(tracking_uri=result.tracking_uri)
    for trial in result.trials:
        run = client.get_run(result.run_ids[trial.number])
        assert run.info.status == RUN_STATUS[trial.state]
        if trial.state == "FAIL":
            assert run.data.tags["automl.fail_reason"]
    errors = [t for t in failed if "RuntimeError" in (t.fail_reason or "")]
    # The durable study, which resumed jobs and `automl status` read, holds the trial's own error too.
    durable = optuna.load_study(study_name=result.study_name, storage=result.storage_url)
    assert "RuntimeError: diverged" in durable.trials[errors[0].number].user_attrs["fail_reason"]
    artifacts = [a.path for a in client.list_artifacts(result.run_ids[errors[0].number])]
    assert "error.txt" in artifacts


@pytest.mark.usefixtures("tracked_home")
def test_define_by_run_space_is_conditional(automl_home: Path, ray_session: None) -> None:
    def space(trial: optuna.Trial) -> None:
        kind = trial.suggest_categorical("kind", ["linear", "quadratic"])
        if kind == "quadratic":
            trial.suggest_float("a", 0.0, 1.0)

    def objective(params: dict) -> float:
        return params["a"] ** 2 if params["kind"] == "quadratic" else 0.5

    result = automl.search(objective, space, n_trials=10, max_steps=1, metric="loss", name="conditional", seed=2, plots=False)
    kinds = {t.params["kind"] for t in result.trials}
    assert kinds == {"linear", "quadratic"}
    for trial in result.trials:
        assert ("a" in trial.params) == (trial.params["kind"] == "quadratic")


@pytest.mark.usefixtures("tracked_home")
def test_asha_stops_poor_trials_and_the_study_says_pruned(automl_home: Path, ray_session: None) -> None:
    def slope(params: dict, ctx: TrialContext) -> None:
        for step in range(1, ctx.max_epochs + 1):
            ctx.report(loss=params["x"] * 10 + 1.0 / step, step=step)

    result = automl.search(
        slope,
        {"x": {"type": "float", "low": 0, "high": 1}},
        n_trials=12,
        max_steps=8,
        metric="loss",
        name="pruning",
        sampler="random",
        max_concurrent=1,
        seed=5,
        plots=False,
    )
    states = result.state_counts
    assert states.get("PRUNED", 0) >= 1 and states.get("COMPLETE", 0) >= 1, states
    pruned = [t for t in result.trials if t.state == "PRUNED"]
    complete = [t for t in result.trials if t.state == "COMPLETE"]
    # ASHA stops the worse ones: the best complete trial beats every pruned trial's x.
    assert min(t.params["x"] for t in complete) < min(t.params["x"] for t in pruned)


def test_bad_arguments_name_the_field(automl_home: Path) -> None:
    with pytest.raises(SpecError, match=r"budget\.trials"):
        automl.search(bowl, {"x": {"type": "float", "low": 0, "high": 1}}, n_trials=0)
    with pytest.raises(SpecError, match=r"sampler\.name: unknown sampler 'bayes'"):
        automl.search(bowl, {"x": {"type": "float", "low": 0, "high": 1}}, sampler="bayes")
    with pytest.raises(SpecError, match=r"space.params.x: low \(1.0\) must be less than high"):
        automl.search(bowl, {"x": {"type": "float", "low": 1, "high": 0}})
    # The per-trial time limit and the scheduler's options reach the job spec and its checks.
    with pytest.raises(SpecError, match=r"budget\.trial_timeout_s"):
        automl.search(bowl, {"x": {"type": "float", "low": 0, "high": 1}}, trial_timeout_s=-1)
    with pytest.raises(SpecError, match="perturbation_interval"):
        automl.search(
            bowl, {"x": {"type": "float", "low": 0, "high": 1}}, scheduler="pbt", scheduler_options={"perturbation_interval": 0}
        )
    assert not automl_home.exists()


def test_more_gpus_than_the_cluster_has_is_refused_before_writing(automl_home: Path, ray_session: None) -> None:
    import ray

    gpus = ray.cluster_resources().get("GPU", 0.0)
    with pytest.raises(SpecError, match=r"resources\.gpus_per_trial: each trial asks for"):
        automl.search(bowl, {"x": {"type": "float", "low": 0, "high": 1}}, gpus_per_trial=gpus + 1)
    assert not (automl_home / "mlflow.db").exists() and not (automl_home / "studies.db").exists()


@pytest.mark.usefixtures("tracked_home")
def test_no_completed_trial_marks_the_job_run_failed(automl_home: Path, ray_session: None) -> None:
    def broken(params: dict) -> float:
        raise ValueError("always")

    result = automl.search(broken, {"x": {"type": "float", "low": 0, "high": 1}}, n_trials=2, max_steps=1, name="broken")
    assert result.best_value is None and result.state_counts == {"FAIL": 2}
    parent = MlflowClient(tracking_uri=result.tracking_uri).get_run(result.parent_run_id)
    assert parent.info.status == "FAILED" and parent.data.tags["automl.state"] == "failed"


def test_search_refuses_a_boolean_trial_count() -> None:
    # n_trials=True used to mean one trial; a count must be a number. Refused before Ray or MLflow start.
    with pytest.raises(SpecError, match=r"budget\.trials: expected a number, got the boolean true"):
        automl.search(lambda params: params["x"], {"x": {"type": "float", "low": 0, "high": 1}}, n_trials=True)


@pytest.mark.usefixtures("tracked_home")
def test_a_space_of_ray_tune_domains_is_searched_with_tune_s_own_bounds(automl_home: Path, ray_session: None) -> None:
    from ray import tune

    space = {
        "lr": tune.loguniform(1e-4, 1e-1),
        "width": tune.randint(8, 10),  # Tune's upper bound is exclusive: 8 or 9
        "step": tune.qrandint(0, 4, 2),  # and qrandint's inclusive: 0, 2 or 4
        "act": tune.choice(["relu", "tanh"]),
        "dropout": tune.quniform(0.0, 0.5, 0.1),
    }
    result = automl.search(
        lambda p: p["lr"] * p["width"], space, n_trials=6, max_steps=1, metric="loss", plots=False, name="tune-space"
    )
    seen = result.trials_frame()
    assert set(seen["params_width"]) <= {8, 9} and set(seen["params_step"]) <= {0, 2, 4}
    assert set(seen["params_act"]) <= {"relu", "tanh"} and seen["params_lr"].between(1e-4, 1e-1).all()
    assert all(abs(d * 10 - round(d * 10)) < 1e-9 for d in seen["params_dropout"])
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{automl_home / 'studies.db'}")
    assert study.trials[0].distributions["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    with pytest.raises(automl.SpecError, match=r"space: give every parameter"):
        automl.search(lambda p: 0.0, {"lr": tune.uniform(0, 1), "x": {"type": "float", "low": 0, "high": 1}}, n_trials=1)
