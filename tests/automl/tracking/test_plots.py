"""The search plots and the job summary on the parent run: real Optuna studies, a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from controls import RecordingControl

from automl.states import StopReason
from automl.tracking import RESULT_PREFIX, MlflowTracker
from automl.tracking.plots import log_search_plots, plot_specs, should_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def _tracker(store: tuple[str, str], experiment: str) -> MlflowTracker:
    tracker = MlflowTracker(store[0], artifact_root=store[1])
    tracker.start_job(
        experiment=experiment,
        run_name=f"{experiment}-run",
        params={},
        tags={"automl.kind": "job"},
        artifacts={},
        description="What this job is for.",
    )
    return tracker


def _study(directions: list[str], n_trials: int, *, steps: int = 0) -> optuna.Study:
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed=1))
    study.set_user_attr("job_name", "toy")

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        x = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        y = trial.suggest_categorical("batch_size", [8, 16, 32])
        for step in range(1, steps + 1):
            trial.report(x * step, step)
        return (x + y / 100, x - y) if len(directions) > 1 else x + y / 100

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials)
    return study


def _artifacts(tracker: MlflowTracker) -> list[str]:
    return sorted(f.path for f in tracker.client.list_artifacts(tracker.parent_run_id, "plots"))


@pytest.mark.parametrize(
    ("reason", "complete", "expected"),
    [
        (None, 0, False),
        (None, 1, True),
        (StopReason.CANCEL, 1, False),
        (StopReason.CANCEL, 2, True),
        (StopReason.RELEASE, 10, False),
    ],
)
def test_which_endings_are_plotted(reason: str | None, complete: int, expected: bool) -> None:
    assert should_plot(reason, complete) is expected


def test_a_finished_job_gets_every_plot_as_html_and_png(store: tuple[str, str]) -> None:
    tracker = _tracker(store, "plots-single")
    control = RecordingControl()
    logged = log_search_plots(tracker, _study(["maximize"], 8, steps=3), ["val_accuracy"], control)

    names = ("learning_curves", "optimization_history", "parallel_coordinate", "param_importances")
    expected = sorted(f"plots/{n}.{ext}" for n in names for ext in ("html", "png"))
    assert sorted(logged) == expected == _artifacts(tracker)
    assert control.events == []
    folder = Path(tracker.client.download_artifacts(tracker.parent_run_id, "plots"))
    html = (folder / "optimization_history.html").read_text()
    # plotly.js is in the file itself: the plot renders with no internet access.
    assert "toy: val_accuracy by trial" in html and '<script src="https://cdn.plot.ly' not in html
    assert "plotly.js v" in html and len(html) > 3_000_000
    assert (folder / "param_importances.png").read_bytes().startswith(PNG_MAGIC)


def test_a_png_has_one_title() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as mpl

    from automl.tracking.plots import _retitle

    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        ax = mpl.plot_param_importances(_study(["maximize"], 6))
    assert ax.get_title(loc="left") == "Hyperparameter Importances"  # Optuna's, where ours would overlap it
    _retitle(ax, "toy: hyperparameter importance for val_accuracy")
    titles = [ax.get_title(loc=loc) for loc in ("left", "center", "right")]
    assert titles == ["", "toy: hyperparameter importance for val_accuracy", ""]
    plt.close(ax.get_figure())


def test_learning_curves_need_a_trial_that_reported_twice() -> None:
    one_report = [spec.name for spec in plot_specs(_study(["maximize"], 4, steps=1), ["val_accuracy"], "toy", n_complete=4)]
    two_reports = [spec.name for spec in plot_specs(_study(["maximize"], 4, steps=2), ["val_accuracy"], "toy", n_complete=4)]
    assert "learning_curves" not in one_report and "optimization_history" in one_report
    assert "learning_curves" in two_reports


def test_several_objectives_get_the_pareto_front(store: tuple[str, str]) -> None:
    tracker = _tracker(store, "plots-multi")
    logged = log_search_plots(tracker, _study(["maximize", "minimize"], 8), ["val_accuracy", "params"])
    assert {"plots/pareto_front.html", "plots/pareto_front.png", "plots/optimization_history.png"} <= set(logged)


def test_a_cancelled_job_with_one_completed_trial_is_not_plotted(store: tuple[str, str]) -> None:
    tracker = _tracker(store, "plots-cancelled")
    assert log_search_plots(tracker, _study(["maximize"], 1), ["val_accuracy"], RecordingControl(StopReason.CANCEL)) == []
    assert _artifacts(tracker) == []


def test_a_plot_failure_is_an_event_not_an_error(store: tuple[str, str]) -> None:
    tracker = _tracker(store, "plots-broken")
    tracker.parent_run_id = "0" * 32  # a run MLflow does not have: it refuses the artifacts
    control = RecordingControl()
    assert log_search_plots(tracker, _study(["maximize"], 4), ["val_accuracy"], control) == []
    ((kind, message),) = control.events
    assert kind == "plots_failed" and "not affected" in message


def test_the_job_run_and_experiment_describe_themselves(store: tuple[str, str]) -> None:
    tracker = _tracker(store, "summary")
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert "tags.automl.state = 'FAIL'" in experiment.tags["mlflow.note.content"]
    job_id = tracker.client.get_run(tracker.parent_run_id).info.run_id[:8]  # its run name ends in no hex id
    child = tracker.start_trial(3, {"lr": 0.01}, {})
    tracker.end_trial(child, "PRUNED", reason=None, error_text=None)

    # Cancelled: no counts given, so they are read from the trials' runs.
    tracker.finish_job("KILLED", metrics={}, params={}, tags={"automl.state": "cancelled"})
    note = tracker.client.get_run(tracker.parent_run_id).data.tags["mlflow.note.content"]
    assert note.startswith(f"{RESULT_PREFIX}**cancelled**, 1 trial (1 pruned).") and note.endswith("What this job is for.")

    # Finished again (a resumed job): the summary is replaced, the description kept once.
    tracker.finish_job(
        "FINISHED",
        metrics={"trials_complete": 2, "trials_pruned": 1, "best_val_accuracy": 0.875},
        params={"best.lr": 0.0123456, "best.batch_size": 16},
        tags={"automl.state": "succeeded", "automl.best_trial": "4", "automl.best_run_id": child},
    )
    note = tracker.client.get_run(tracker.parent_run_id).data.tags["mlflow.note.content"]
    assert note.count("What this job is for.") == 1 and note.count(RESULT_PREFIX) == 1
    assert note.startswith(
        f"{RESULT_PREFIX}**succeeded**, 3 trials (2 complete, 1 pruned). "
        f"Best `val_accuracy`: **0.875** in [trial-004-{job_id}](#/experiments/{tracker.experiment_id}/runs/{child})."
    )
    assert "Best hyperparameters: `lr` = 0.01235, `batch_size` = 16." in note
