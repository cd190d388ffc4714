"""A search's phase times (automl/engine/phases.py): split right, and written by a real search."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from controls import RecordingControl

from automl.engine import plan_search, run_search
from automl.engine.phases import PhaseClock
from automl.spec import JobSpec

PHASES = ["writer", "ray", "stores", "tracking", "set-up", "trials", "settle", "plots", "summary"]


def test_each_mark_ends_a_phase_and_a_phase_marked_twice_adds_up() -> None:
    ticks = itertools.count()
    clock = PhaseClock(clock=lambda: float(next(ticks)))  # 0 at creation, then 1, 2, ...
    clock.mark("ray")
    clock.mark("trials", "the first began after 0.5 s")
    clock.mark("ray")
    assert clock.seconds == {"ray": 2.0, "trials": 1.0}
    assert clock.total_s == 3.0
    assert clock.line() == "ray 2.0 s, trials 1.0 s (the first began after 0.5 s); 3.0 s in all"


def steps(params: dict, ctx) -> None:
    for step in range(1, ctx.max_epochs + 1):
        ctx.report(loss=(params["x"] - 0.5) ** 2 + 1.0 / step, step=step)


def three_trial_spec(name: str, **tracking: object) -> JobSpec:
    """A job of 3 trials of :func:`steps`, 2 epochs each, its model not registered; ``tracking`` on top."""
    return JobSpec.model_validate(
        {
            "name": name,
            "objective": f"{__name__}:steps",
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "metric": "loss",
            "mode": "min",
            "scheduler": {"name": "fifo"},
            "budget": {"trials": 3, "max_epochs": 2},
            "tracking": {"register_model": False, **tracking},
        }
    )


@pytest.mark.slow
def test_a_search_reports_every_phase_in_its_result_and_its_events(tracked_home: Path, ray_session: None) -> None:
    spec = three_trial_spec("phases")
    control = RecordingControl()
    result = run_search(plan_search(spec, objective=steps), control=control)
    assert list(result.phases) == PHASES
    assert all(seconds >= 0 for seconds in result.phases.values())
    assert result.phases["trials"] > 0  # 3 real trials ran
    lines = [message for kind, message in control.events if kind == "phases"]
    assert len(lines) == 1 and lines[0].startswith("writer ") and lines[0].endswith(" s in all")
    assert "trials " in lines[0] and "(the first began after " in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("plots", [True, False])
def test_the_plots_are_drawn_by_the_plotter_after_the_result_and_reach_the_job_run(
    tracked_home: Path, ray_session: None, plots: bool
) -> None:
    """The end-of-job plots are off the caller's path: handed to the process's plotter (a niced
    helper process), which draws them from the durable study onto the parent run;
    ``tracking.plots: false`` skips them."""
    from mlflow import MlflowClient

    from automl.engine import write_behind

    spec = three_trial_spec("plots-behind", plots=plots)
    control = RecordingControl()
    result = run_search(plan_search(spec, objective=steps), control=control)
    write_behind.shared_plotter().barrier()  # everything the plotter was sent is done
    client = MlflowClient(tracking_uri=result.tracking_uri)
    logged = {f.path for f in client.list_artifacts(result.parent_run_id, "plots")}
    note = client.get_run(result.parent_run_id).data.tags["mlflow.note.content"]  # the run's description
    if plots:
        assert {"plots/optimization_history.html", "plots/optimization_history.png"} <= logged
        assert "Plots: the `plots/` artifacts" in note
    else:
        assert logged == set() and "Plots:" not in note
    assert "plots_failed" not in control.kinds()
