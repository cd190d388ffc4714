"""Ray Tune's ``OptunaSearch``, made to keep the Optuna study the full record of a job.

Stock ``OptunaSearch`` tells Optuna COMPLETE for any trial that reported a value, so a trial
that the scheduler stopped early, or that raised after a report, looks finished. Here every
trial ends in the state it really reached, decided once by :func:`trial_outcome`, which the
MLflow tracking uses too, so the two records agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray.tune.search.optuna import OptunaSearch

from automl.engine.working_study import WorkingStudy
from automl.states import StopReason, TrialState, to_optuna
from workers.context import FAIL_REASON_KEY, FINAL_KEY, as_number
from workers.trainable import TRIAL_NUMBER_KEY

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

RAY_TRIAL_ID_ATTR = "ray_trial_id"
FAIL_REASON_ATTR = "fail_reason"


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: ``COMPLETE``, ``PRUNED`` or ``FAIL``, its value(s), and why it failed.

    ``value`` is the primary (first) metric; ``values`` holds every objective's value.
    """

    state: str
    value: float | None
    reason: str | None = None
    values: tuple[float, ...] | None = None


def trial_outcome(
    result: dict[str, Any] | None,
    metric: str | Sequence[str],
    *,
    error: bool,
    error_message: str | None = None,
) -> TrialOutcome:
    """Decide a finished trial's state from its last result.

    FAIL: it raised, it ended itself as failed (``TrialContext.fail``: training diverged, the
    objective returned a non-number), or a metric is missing, not a number (a string or a
    bool is not one, though ``float()`` takes it), NaN or infinite. COMPLETE: its last report
    was the final one (the last epoch, or the objective returned). PRUNED: the scheduler stopped it.
    """
    if error:
        return TrialOutcome(TrialState.FAIL, None, error_message or "the trial raised an exception")
    result = result or {}
    if result.get(FAIL_REASON_KEY):
        return TrialOutcome(TrialState.FAIL, None, str(result[FAIL_REASON_KEY]))
    values: list[float] = []
    for name in [metric] if isinstance(metric, str) else list(metric):
        raw = result.get(name)
        if raw is None:
            return TrialOutcome(TrialState.FAIL, None, f"the trial reported no {name!r}")
        value = as_number(raw)
        if value is None:
            return TrialOutcome(TrialState.FAIL, None, f"{name!r} is not a number: {raw!r}"[:500])
        if not math.isfinite(value):
            return TrialOutcome(TrialState.FAIL, None, f"{name!r} is {value}")
        values.append(value)
    state = TrialState.COMPLETE if result.get(FINAL_KEY) else TrialState.PRUNED
    return TrialOutcome(state, values[0], None, tuple(values))


INTERRUPTED = "INTERRUPTED"


def _never() -> str | None:
    return None


def _no_reason(_trial_id: str) -> str | None:
    return None


def suggest(trial: optuna.Trial, name: str, distribution: Any) -> Any:
    """``trial.suggest_*`` for an Optuna distribution object."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log, step=distribution.step)
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log, step=distribution.step)


class StudySearch(OptunaSearch):
    """``OptunaSearch`` that numbers trials, links them to Ray trial ids, and records true states.

    The sampler works on an in-memory copy of the job's study that writes every change
    through to the durable one (:class:`~automl.engine.working_study.WorkingStudy`): three or four
    small transactions per trial on the driver's loop instead of about sixteen.

    Args:
        resume: trials of this study left RUNNING by a runner that died or stopped; they are
            handed out first, with their own parameters and trial numbers, so they are retried
            rather than lost or counted twice.
        interruption: tells why the job is stopping, if it is (see :mod:`automl.control`).
    """

    def __init__(
        self,
        *args: Any,
        resume: list[optuna.trial.FrozenTrial] | None = None,
        interruption: Callable[[], str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        self._working: WorkingStudy | None = None
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, TrialOutcome] = {}
        self._last_step: dict[str, int] = {}
        self._resume = list(resume or [])
        # Set by the tracking callback, which sees Tune's trials: a failed trial's own error text.
        self.error_reason: Callable[[str], str | None] = _no_reason
        self._interruption = interruption or _never

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its searcher with the experiment (tuner.pkl, for Tuner.restore, which jobs
        # never use: they resume from the study). The stop check belongs to this process, and the
        # storage (reached from the study and its trials too) would carry its URL, password
        # included, into the file: none of them goes in the pickle. Nor does the sampler: it lives
        # in the working study of this process, and some hold locks (optuna 5.1's NSGA samplers).
        state = {**self.__dict__, "_interruption": _never, "error_reason": _no_reason}
        for name in ("_storage", "_ot_study", "_working", "_sampler"):
            if name in state:
                state[name] = None
        if "_ot_trials" in state:
            state["_ot_trials"] = {}
        return state

    def _setup_study(self, mode: str | list[str]) -> None:
        # OptunaSearch would open the study on the storage itself; ask a working copy instead.
        from optuna.samplers import TPESampler

        if self._points_to_evaluate:
            raise ValueError("StudySearch takes warm-start points through enqueue(), not points_to_evaluate")
        modes = mode if isinstance(mode, list) else [mode]
        assert self._storage is not None, "StudySearch is given the job's storage"
        self._working = WorkingStudy(
            self._storage,
            self._study_name,
            ["minimize" if m == "min" else "maximize" for m in modes],
            self._sampler or TPESampler(seed=self._seed),
        )
        self._ot_study = self._working.memory

    def write_behind(self, remote: Any) -> None:
        """Make the study's trial writes through a :class:`~automl.engine.write_behind.WriteBehind` from now on."""
        assert self._working is not None
        self._working.write_behind(remote)

    def drain(self) -> None:
        """Wait until every trial write is durable (raises the first that failed)."""
        if self._working is not None:
            self._working.drain()

    def set_durable_user_attr(self, number: int, key: str, value: Any) -> None:
        """Write a user attribute of trial ``number`` to the durable study (PBT's record of its exploits)."""
        assert self._working is not None
        self._working.set_durable_user_attr(number, key, value)

    @property
    def study(self) -> optuna.Study:
        """The Optuna study this searcher asks and tells (the in-memory working copy)."""
        assert self._working is not None
        return self._working.memory

    @property
    def durable_study(self) -> optuna.Study:
        """The job's study in the RDB storage, which every change is written through to."""
        assert self._working is not None
        return self._working.durable

    def enqueue(self, params: dict[str, Any]) -> None:
        """Queue a configuration to run before any sampled one (written to the durable study)."""
        assert self._working is not None
        self._working.enqueue(params)

    def trial_number(self, trial_id: str) -> int | None:
        """The Optuna trial number behind a Ray trial id."""
        trial = self._ot_trials.get(trial_id)
        return None if trial is None else trial.number

    def save(self, checkpoint_path: str) -> None:
        # Tune snapshots its searcher now and then. The study in the RDB storage already holds
        # all of the search's state, and pickling this object would copy the storage URL (with
        # its password) and fail on a define-by-run function defined inside another function.
        import json

        with open(checkpoint_path, "w", encoding="utf-8") as handle:
            json.dump({"study_name": self._study_name, "state": "kept in the Optuna storage"}, handle)

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("resume a job from its Optuna study, not from a Tune searcher snapshot")

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config: dict[str, Any] | None
        if self._resume and trial_id not in self._ot_trials:
            config = self._suggest_resumed(trial_id, self._resume.pop(0))
        else:
            config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        assert self._working is not None
        self._working.started(ot_trial, {RAY_TRIAL_ID_ATTR: trial_id})
        return {**config, TRIAL_NUMBER_KEY: ot_trial.number}

    def _suggest_resumed(self, trial_id: str, frozen: optuna.trial.FrozenTrial) -> dict[str, Any]:
        assert self._working is not None
        ot_trial = self._working.trial(frozen.number)
        self._ot_trials[trial_id] = ot_trial
        # Steps the interrupted attempt reported stay; Optuna keeps the first value per step.
        self._last_step[trial_id] = max(frozen.intermediate_values, default=0)
        if callable(self._space):
            return self._suggest_from_define_by_run_func(self._space, ot_trial)
        # Suggesting a parameter the trial already has returns its value; one the runner died
        # before choosing is sampled now.
        assert isinstance(self._space, dict)  # Tune's space, converted to Optuna distributions by OptunaSearch
        return {name: suggest(ot_trial, name, dist) for name, dist in self._space.items()}

    def unfinished(self) -> list[str]:
        """Ray trial ids this searcher asked Optuna for and has not told the outcome of."""
        return [tid for tid in self._ot_trials if tid not in self._completed_trials]

    def started_ms(self, trial_id: str) -> int | None:
        """When Optuna started the trial behind a Ray trial id (its ``datetime_start``), in ms since the epoch."""
        trial = self._ot_trials.get(trial_id)
        started = None if trial is None else trial.datetime_start
        return None if started is None else int(started.timestamp() * 1000)  # naive local time, as Optuna stamps it

    def trial_params(self, trial_id: str) -> dict[str, Any]:
        """The parameters Optuna chose for a Ray trial id."""
        trial = self._ot_trials.get(trial_id)
        return {} if trial is None else dict(trial.params)

    def reported(self, trial_id: str) -> bool:
        """Whether the trial reported at least one step to the study."""
        return self._last_step.get(trial_id, 0) > 0

    def settle(self, trial_id: str, outcome: TrialOutcome) -> None:
        """Tell Optuna the outcome of a trial that Tune stopped without a completion call."""
        if trial_id in self._completed_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        state = to_optuna(outcome.state)
        values: Any = None
        if outcome.state == TrialState.COMPLETE:
            values = list(outcome.values or ()) if isinstance(self.metric, list) else outcome.value
        assert self._working is not None
        self._working.tell(ot_trial, values, state, {FAIL_REASON_ATTR: outcome.reason[:2000]} if outcome.reason else None)
        self.outcomes[trial_id] = outcome
        self._completed_trials.add(trial_id)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        step = int(result.get("training_iteration") or 0)
        if trial_id not in self._ot_trials or step <= self._last_step.get(trial_id, 0):
            return
        if isinstance(self.metric, list):  # Optuna keeps no intermediate values for several objectives
            self._last_step[trial_id] = step
            return
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            assert self._working is not None
            self._working.report(self._ot_trials[trial_id], float(value), step)
            self._last_step[trial_id] = step

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return

        outcome = trial_outcome(result, self.metric, error=error, error_message=self.error_reason(trial_id) if error else None)
        stopping = self._interruption()
        if outcome.state != TrialState.COMPLETE and stopping == StopReason.RELEASE:
            # The runner is handing the job back: leave the trial RUNNING for the next runner to retry.
            self.outcomes[trial_id] = TrialOutcome(INTERRUPTED, None, "the runner stopped; the trial will be retried")
            self._completed_trials.add(trial_id)
            return
        if outcome.state != TrialState.COMPLETE and stopping == StopReason.CANCEL and not error:
            outcome = TrialOutcome(TrialState.FAIL, None, "the job was cancelled")
        if result and not error:
            # Tune does not pass the result that made the scheduler stop a trial to
            # on_trial_result; record it here so the study holds every epoch.
            self.on_trial_result(trial_id, result)
        # Optuna takes a PRUNED trial's value from its last intermediate report.
        self.settle(trial_id, outcome)
