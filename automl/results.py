"""What a finished search hands back: the best trial, every trial as a table, where it is tracked."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from automl.states import TrialState

if TYPE_CHECKING:
    import pandas as pd
    import torch


@dataclass(frozen=True)
class TrialSummary:
    """One trial as the study recorded it, with its MLflow run."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    run_id: str | None = None
    fail_reason: str | None = None
    values: tuple[float, ...] | None = None
    started_at: datetime | None = None  # as Optuna stamps them: naive local time
    finished_at: datetime | None = None
    intermediate: dict[int, float] = field(default_factory=dict)  # the primary metric by step, as reported
    user_attrs: dict[str, Any] = field(default_factory=dict)


def primary_value(trial: TrialSummary) -> float:
    """A trial's value on the primary metric, to rank trials that have one (COMPLETE trials do).

    Raises:
        ValueError: if the trial has no value.
    """
    if trial.value is None:
        raise ValueError(f"trial {trial.number} has no value to rank by")
    return trial.value


def top_trials(trials: Iterable[TrialSummary], mode: str, n: int = 5) -> list[TrialSummary]:
    """The ``n`` best COMPLETE trials on the primary metric, best first (``mode``: ``min`` or ``max``)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=primary_value, reverse=mode == "max")[:n]


def dominates(a: TrialSummary, b: TrialSummary, modes: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every objective and better on one."""
    signs = [1.0 if m == "min" else -1.0 for m in modes]
    pa = [s * v for s, v in zip(signs, a.values or (), strict=False)]
    pb = [s * v for s, v in zip(signs, b.values or (), strict=False)]
    return all(x <= y for x, y in zip(pa, pb, strict=True)) and any(x < y for x, y in zip(pa, pb, strict=True))


def pareto_front(trials: Iterable[TrialSummary], modes: Sequence[str]) -> list[TrialSummary]:
    """The COMPLETE trials that no other trial beats on every objective, in the order given."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    return [t for t in done if not any(dominates(o, t, modes) for o in done if o is not t)]


@dataclass(frozen=True)
class SearchResult:
    """The outcome of one search job.

    Attributes:
        job_name: the spec's name.
        study_name: the Optuna study (``optuna.load_study(study_name=..., storage=storage_url)``).
        storage_url: the Optuna storage, password hidden.
        metric, mode: what was optimised, and which way.
        best_params, best_value, best_trial_number: the best COMPLETE trial (``None`` if none completed).
        trials: every trial of the study, in trial order.
        experiment_id, parent_run_id, tracking_uri: the job's MLflow record.
        model_uri: where the best model can be loaded from (``models:/name/version``), if one was logged.
        registered_model: the Model Registry ``(name, version)`` of the best model, if registered.
        tracking_errors: MLflow writes that failed during the search (the search went on).
        metrics, modes: every objective (the first is ``metric``) and its direction.
        pareto_front: with several metrics, the trials no other trial beats on all of them.
        phases: seconds the search spent in each phase, in order (``writer``, ``ray``, ``stores``,
            ``tracking``, ``set-up``, ``trials``, ``settle``, ``plots``, ``summary``); also the job's
            ``phases`` event.
        sampler, scheduler: what the search ran (what ``auto`` chose, when it was asked for).
        strategy_reason: why ``auto`` chose them (``None``: the spec named both).
    """

    job_name: str
    study_name: str
    storage_url: str
    metric: str
    mode: str
    best_params: dict[str, Any] | None
    best_value: float | None
    best_trial_number: int | None
    trials: tuple[TrialSummary, ...]
    experiment_id: str | None
    parent_run_id: str | None
    tracking_uri: str
    model_uri: str | None = None
    registered_model: tuple[str, str] | None = None
    tracking_errors: tuple[str, ...] = field(default_factory=tuple)
    metrics: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    pareto_front: tuple[TrialSummary, ...] = ()
    phases: dict[str, float] = field(default_factory=dict)
    sampler: str = ""
    scheduler: str = ""
    strategy_reason: str | None = None

    @property
    def state_counts(self) -> dict[str, int]:
        """How many trials ended in each state."""
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.state] = counts.get(trial.state, 0) + 1
        return counts

    @property
    def run_ids(self) -> dict[int, str]:
        """The MLflow child run id of each trial, by trial number."""
        return {t.number: t.run_id for t in self.trials if t.run_id is not None}

    def top(self, n: int = 5) -> list[TrialSummary]:
        """The ``n`` best COMPLETE trials, best first."""
        return top_trials(self.trials, self.mode, n)

    def trials_frame(self) -> pd.DataFrame:
        """Every trial as a table, with the columns ``optuna.Study.trials_dataframe()`` has and their
        names: ``number``, ``value_<metric>`` (``values_<metric>`` each, with several metrics),
        ``datetime_start``, ``datetime_complete``, ``duration``, ``params_*``, ``user_attrs_*``,
        ``state`` and ``intermediate_values_<step>``; then the trial's MLflow ``run_id`` and its
        ``fail_reason``."""
        import pandas as pd

        several = len(self.metrics) > 1

        def row(t: TrialSummary) -> dict[str, Any]:
            # As Optuna names them for a study whose metrics are named (every job's study is).
            if several:
                values = dict(zip([f"values_{m}" for m in self.metrics], t.values or [None] * len(self.metrics), strict=True))
            else:
                values = {f"value_{self.metric}": t.value}
            return {
                "number": t.number,
                **values,
                "datetime_start": t.started_at,
                "datetime_complete": t.finished_at,
                "duration": t.finished_at - t.started_at if t.started_at and t.finished_at else None,
                **{f"params_{k}": v for k, v in sorted(t.params.items())},
                **{f"user_attrs_{k}": v for k, v in sorted(t.user_attrs.items())},
                "state": t.state,
                **{f"intermediate_values_{step}": v for step, v in sorted(t.intermediate.items())},
                "run_id": t.run_id,
                "fail_reason": t.fail_reason,
            }

        frame = pd.DataFrame([row(t) for t in self.trials])
        for column in ("datetime_start", "datetime_complete"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column])
        if "duration" in frame:
            frame["duration"] = pd.to_timedelta(frame["duration"])

        # Optuna's column order, whichever trial brought a column first.
        def group(prefix: str) -> list[str]:
            return sorted(c for c in frame.columns if c.startswith(prefix))

        steps = sorted(group("intermediate_values_"), key=lambda c: int(c.rsplit("_", 1)[1]))
        named = [f"values_{m}" for m in self.metrics] if several else [f"value_{self.metric}"]
        head = ["number", *named, "datetime_start", "datetime_complete", "duration"]
        order = [*head, *group("params_"), *group("user_attrs_"), "state", *steps, "run_id", "fail_reason"]
        return frame[[c for c in order if c in frame.columns]]

    def load_best_model(self) -> torch.nn.Module:
        """Load the best model from MLflow (the Model Registry when it was registered).

        Raises:
            LookupError: no model was logged (no trial completed, or the objective saved none).
        """
        if self.model_uri is None:
            raise LookupError("no model was logged for this search: no trial completed or the objective saved none")
        import mlflow.pytorch

        from automl.tracking import fluent_uris

        with fluent_uris(self.tracking_uri):
            return mlflow.pytorch.load_model(self.model_uri)
