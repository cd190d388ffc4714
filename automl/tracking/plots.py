"""The search plots of a job, made by Optuna's own ``optuna.visualization`` from the job's study
and logged under ``plots/`` of the job's MLflow parent run, where the MLflow UI shows them.

Each plot is logged twice: an interactive plotly ``.html`` with plotly.js embedded in it (so it
renders without internet access, in the MLflow UI's artifact viewer or saved to disk; about
4.7 MB each) and a ``.png`` drawn by ``optuna.visualization.matplotlib`` that previews anywhere. Plots are a view of the results, never a reason for a job to
fail: a plot that cannot be drawn is skipped with a warning and a job event. A search with a
writer process (the default) has them drawn there, after its result was returned: they reach the
parent run a moment after the job ends, never holding up the caller.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.states import StopReason

if TYPE_CHECKING:
    import optuna

    from automl.control import JobControl
    from automl.tracking import MlflowTracker

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"
# pyplot keeps global state, and a runner may finish two jobs at once.
_DRAW_LOCK = threading.Lock()


@dataclass(frozen=True)
class PlotSpec:
    """One plot: its file name (without extension), and how plotly and matplotlib draw it."""

    name: str
    title: str
    plotly: Callable[[], Any]
    matplotlib: Callable[[], Any]


def should_plot(stop_reason: str | None, n_complete: int) -> bool:
    """Whether a job that ended so has results worth plotting.

    A finished job (succeeded, or stopped early) is plotted once a trial completed; a cancelled
    one once two did; a job released to another runner is not finished, so it is not plotted.
    """
    if stop_reason == StopReason.RELEASE:
        return False
    return n_complete >= (2 if stop_reason == StopReason.CANCEL else 1)


def log_search_plots(
    tracker: MlflowTracker,
    study: optuna.Study,
    metrics: Sequence[str],
    control: JobControl | None = None,
) -> list[str]:
    """Draw the job's search plots and log them under ``plots/`` of its parent run.

    Called once when the job ends. Never raises: a plot that fails is left out, with one
    warning and one ``plots_failed`` event for all that failed.

    Args:
        tracker: the job's tracker, its parent run known.
        study: the job's Optuna study, every trial in its final state.
        metrics: the study's objectives, in order (the first one is the primary metric).
        control: the job's control, for the stop reason and the event; ``None`` for a search
            from the Python API.

    Returns:
        The artifact paths logged, e.g. ``plots/optimization_history.html``.
    """
    try:
        reason = control.stop_reason() if control is not None else None
    except Exception as exc:  # noqa: BLE001 - plots must never take the job down
        report_plot_failures(f"{type(exc).__name__}: {exc}", control)
        return []
    logged, failures = draw_search_plots(tracker, study, metrics, stop_reason=reason)
    report_plot_failures(failures, control)
    return logged


def draw_search_plots(
    tracker: MlflowTracker, study: optuna.Study, metrics: Sequence[str], *, stop_reason: str | None = None
) -> tuple[list[str], str | None]:
    """The drawing and logging of :func:`log_search_plots`, for a job that ended for ``stop_reason``.

    Runs where the job's study and tracker are, the job's writer process included. Never raises.

    Returns:
        The artifact paths logged, and what failed in one line (``None`` when nothing did).
    """
    failures: list[str] = []
    logged: list[str] = []
    try:
        import optuna

        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if tracker.parent_run_id is None or not should_plot(stop_reason, len(complete)):
            return [], None
        job_name = str(study.user_attrs.get("job_name") or study.study_name)
        with tempfile.TemporaryDirectory(prefix="automl-plots-") as folder:
            out = Path(folder)
            for plot in plot_specs(study, metrics, job_name, n_complete=len(complete)):
                failures += _draw(plot, out)
            files = sorted(p.name for p in out.iterdir())
            if files:
                tracker.client.log_artifacts(tracker.parent_run_id, str(out), PLOTS_DIR)
                logged = [f"{PLOTS_DIR}/{name}" for name in files]
    except Exception as exc:  # noqa: BLE001 - plots must never take the job down
        failures.append(f"{type(exc).__name__}: {exc}")
    return logged, "; ".join(failures) if failures else None


def report_plot_failures(failures: str | None, control: JobControl | None) -> None:
    """Say that plots were left out (``failures``, from :func:`draw_search_plots`): one warning, one event."""
    if not failures:
        return
    message = f"search plots left out ({failures}); the job's results are not affected"
    logger.warning(message)
    if control is not None:
        with contextlib.suppress(Exception):
            control.on_event("plots_failed", message[:2000])


def plot_specs(study: optuna.Study, metrics: Sequence[str], job_name: str, *, n_complete: int) -> list[PlotSpec]:
    """The plots that suit this study: history, parallel coordinates, importances, learning
    curves (when a trial reported twice or more); and the Pareto front when it has two or three
    objectives."""
    import optuna.visualization as pv

    multi = len(metrics) > 1
    primary = metrics[0]
    # With several objectives, the single-objective plots show the primary metric.
    target: dict[str, Any] = {"target_name": primary}
    importance = dict(target)
    if multi:
        target["target"] = _first_value
        # Optuna's evaluator then ranks what it takes to reach the Pareto front, all objectives at once.
        importance = {}
    specs = [
        PlotSpec(
            "optimization_history",
            f"{job_name}: {primary} by trial",
            lambda: pv.plot_optimization_history(study, **target),
            lambda: _mpl().plot_optimization_history(study, **target),
        ),
        PlotSpec(
            "parallel_coordinate",
            f"{job_name}: hyperparameters of the completed trials",
            lambda: pv.plot_parallel_coordinate(study, **target),
            lambda: _mpl().plot_parallel_coordinate(study, **target),
        ),
    ]
    if n_complete >= 2:  # importances compare trials: one is not enough
        specs.append(
            PlotSpec(
                "param_importances",
                f"{job_name}: hyperparameter importance for " + ("reaching the Pareto front" if multi else primary),
                lambda: pv.plot_param_importances(study, **importance),
                lambda: _mpl().plot_param_importances(study, **importance),
            )
        )
    # A curve needs two points: with one report per trial the history plot already shows it all
    # (and drawing a line per trial is most of the plotting time of a many-trial job).
    if not multi and any(len(t.intermediate_values) >= 2 for t in study.get_trials(deepcopy=False)):
        specs.append(
            PlotSpec(
                "learning_curves",
                f"{job_name}: {primary} per epoch, every trial (pruned ones stop early)",
                lambda: pv.plot_intermediate_values(study),
                lambda: _mpl().plot_intermediate_values(study),
            )
        )
    if multi and len(metrics) in (2, 3):
        specs.append(
            PlotSpec(
                "pareto_front",
                f"{job_name}: Pareto front of {', '.join(metrics)}",
                lambda: pv.plot_pareto_front(study, target_names=list(metrics)),
                lambda: _mpl().plot_pareto_front(study, target_names=list(metrics)),
            )
        )
    return specs


def _mpl() -> Any:
    """Optuna's matplotlib plots (imported when first drawn: matplotlib is a second or so)."""
    import optuna.visualization.matplotlib

    return optuna.visualization.matplotlib


def _first_value(trial: optuna.trial.FrozenTrial) -> float:
    return float(trial.values[0])


def _draw(plot: PlotSpec, out: Path) -> list[str]:
    """Write ``plot`` as ``.html`` and ``.png`` into ``out``; return what failed, if anything."""
    # One plot at a time in a process: pyplot and the warnings filters are global.
    with _DRAW_LOCK, warnings.catch_warnings():
        # optuna.visualization.matplotlib is marked experimental, and the importance evaluator
        # explains its defaults; neither is news to whoever reads the plots.
        warnings.simplefilter("ignore")
        return _draw_unlocked(plot, out)


def _draw_unlocked(plot: PlotSpec, out: Path) -> list[str]:
    failures = []
    try:
        figure = plot.plotly()
        figure.update_layout(title=plot.title)
        # plotly.js inside the file (not from its CDN, as MlflowClient.log_figure writes it): a
        # plot must read offline, where most of the service's machines are.
        figure.write_html(out / f"{plot.name}.html", include_plotlyjs=True, auto_open=False)
    except Exception as exc:  # noqa: BLE001
        failures.append(f"{plot.name}.html: {type(exc).__name__}: {exc}")
    try:
        with _pyplot() as plt:
            axes = plot.matplotlib()
            figure = _figure_of(axes)
            try:
                if _has_many_axes(axes):
                    figure.suptitle(plot.title)
                else:
                    _retitle(_axes_list(axes)[0], plot.title)
                figure.savefig(out / f"{plot.name}.png", dpi=110, bbox_inches="tight")
            finally:
                plt.close(figure)
    except Exception as exc:  # noqa: BLE001
        failures.append(f"{plot.name}.png: {type(exc).__name__}: {exc}")
    return failures


@contextlib.contextmanager
def _pyplot() -> Iterator[Any]:
    """pyplot, with the style Optuna sets for its plots undone afterwards."""
    import matplotlib
    import matplotlib.pyplot as plt

    with matplotlib.rc_context():
        yield plt


def _axes_list(axes: Any) -> list[Any]:
    import numpy as np

    return list(np.atleast_1d(axes).flat)


def _retitle(ax: Any, title: str) -> None:
    """``title`` as the axes' only title: Optuna puts some of its own at the left
    (``Hyperparameter Importances``), where ours at the centre would overlap it."""
    for loc in ("left", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(title, loc="center", pad=12)  # clear of tick labels at the top (parallel coordinates)


def _has_many_axes(axes: Any) -> bool:
    return len(_axes_list(axes)) > 1


def _figure_of(axes: Any) -> Any:
    return _axes_list(axes)[0].get_figure()


__all__ = ["PLOTS_DIR", "log_search_plots", "plot_specs", "should_plot"]
