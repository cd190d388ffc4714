"""How a running search is steered from outside: stop requests in, progress and events out.

The job runner implements :class:`JobControl` over the job store; a foreground search from
the Python API runs with none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from automl.results import TrialSummary
    from automl.states import StopReason


class JobControl(Protocol):
    """The engine's view of the job it runs for."""

    def stop_reason(self) -> StopReason | None:
        """``StopReason.CANCEL`` (stop; unfinished trials fail), ``StopReason.RELEASE`` (stop; unfinished trials
        are left to be resumed by the next runner), or ``None`` to go on. Polled every Tune step: keep it cheap."""
        ...

    def on_tracking(self, experiment_id: str | None, run_id: str | None) -> None:
        """The job's MLflow experiment and parent run are known."""
        ...

    def on_progress(self, finished: int, best: float | None, trial: TrialSummary | None = None) -> None:
        """A trial finished: ``finished`` trials are done in all, ``best`` is the best value so far,
        ``trial`` is the one that finished (its state, values and parameters, as Optuna was told)."""
        ...

    def on_event(self, kind: str, message: str) -> None:
        """Something worth recording happened (a trial failed, the job resumed)."""
        ...
