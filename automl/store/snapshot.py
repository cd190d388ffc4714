"""A job's progress snapshot: trial counts by state, the top trials and the Pareto front.

The runner keeps it in the job row (column ``snapshot``, JSON) and updates it as trials
finish, so ``automl status`` reads one row instead of loading every trial of the Optuna
study (seconds at thousands of trials). It is pure bookkeeping: no SQL, no Optuna, so the
status path imports neither. The study stays the record; the runner rewrites the snapshot
from it when the job starts and when it ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from automl.results import TrialSummary, dominates, primary_value
from automl.states import FINISHED_TRIAL_STATES, TrialState

TOP_K = 10  # status shows 5; a little headroom for `best` and the JSON
SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class JobSnapshot:
    """What ``status`` shows about a job's trials, as of the last finished trial.

    Attributes:
        counts: finished trials by Optuna state (``COMPLETE``, ``PRUNED``, ``FAIL``).
        directions: ``min``/``max`` per objective (empty before the job first ran).
        top: the best COMPLETE trials on the primary objective, best first (at most ``TOP_K``).
        pareto: with several objectives, the COMPLETE trials no other beats on all of them, by number.
    """

    counts: dict[str, int] = field(default_factory=dict)
    directions: tuple[str, ...] = ()
    top: tuple[TrialSummary, ...] = ()
    pareto: tuple[TrialSummary, ...] = ()
    # Written from the job's result as it ended (``concluded``): the best model and the best trial's
    # MLflow run, so `automl best` needs no MLflow round trip (and no MLflow import) for a finished job.
    model_uri: str | None = None
    best_run_id: str | None = None
    concluded: bool = False

    @property
    def finished(self) -> int:
        """How many trials have finished, in any state."""
        return sum(self.counts.values())

    def to_json(self) -> str:
        """The snapshot as the JSON text the job row stores."""
        return json.dumps(
            {
                "v": SNAPSHOT_VERSION,
                "counts": self.counts,
                "directions": list(self.directions),
                "top": [_trial_json(t) for t in self.top],
                "pareto": [_trial_json(t) for t in self.pareto],
                **({"model_uri": self.model_uri, "best_run_id": self.best_run_id, "concluded": True} if self.concluded else {}),
            },
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_json(cls, text: str | None) -> JobSnapshot | None:
        """Read a stored snapshot back; ``None`` for none (a job written before the column existed)."""
        if not text:
            return None
        data = json.loads(text)
        return cls(
            counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
            directions=tuple(data.get("directions", ())),
            top=tuple(_trial_from_json(t) for t in data.get("top", ())),
            pareto=tuple(_trial_from_json(t) for t in data.get("pareto", ())),
            model_uri=data.get("model_uri"),
            best_run_id=data.get("best_run_id"),
            concluded=bool(data.get("concluded", False)),
        )

    @classmethod
    def of_trials(cls, trials: Iterable[TrialSummary], directions: Iterable[str]) -> JobSnapshot:
        """The snapshot of a whole set of trials (a study read back)."""
        builder = SnapshotBuilder(directions)
        for trial in trials:
            builder.add(trial)
        return builder.snapshot()


class SnapshotBuilder:
    """Keeps a :class:`JobSnapshot` up to date one finished trial at a time (O(top + front) each).

    Trials in an unfinished state (``RUNNING``, ``WAITING``) are ignored. A trial seen twice
    replaces its earlier self; that should not happen (the runner starts from the study, then
    the driver reports each trial once), and if it did, the top list or the front could miss a
    trial they had dropped, until the runner rewrites the snapshot from the study at the end.
    """

    def __init__(self, directions: Iterable[str], trials: Iterable[TrialSummary] = ()) -> None:
        self.directions = tuple(directions) or ("min",)
        self._signs = [1.0 if d == "min" else -1.0 for d in self.directions]
        self._states: dict[int, str] = {}
        self._counts: dict[str, int] = {}
        self._top: list[TrialSummary] = []
        self._pareto: list[TrialSummary] = []
        for trial in trials:
            self.add(trial)

    def add(self, trial: TrialSummary) -> None:
        """Count a finished trial and place it among the top trials and on the Pareto front."""
        if trial.state not in FINISHED_TRIAL_STATES:
            return
        earlier = self._states.get(trial.number)
        if earlier is not None:
            self._counts[earlier] -= 1
            self._top = [t for t in self._top if t.number != trial.number]
            self._pareto = [t for t in self._pareto if t.number != trial.number]
        self._states[trial.number] = trial.state
        self._counts[trial.state] = self._counts.get(trial.state, 0) + 1
        if trial.state != TrialState.COMPLETE or trial.value is None:
            return
        entry = TrialSummary(
            number=trial.number,
            state=TrialState.COMPLETE,
            value=trial.value,
            params=dict(trial.params),
            values=tuple(trial.values) if trial.values else (trial.value,),
        )
        self._top.append(entry)
        self._top.sort(key=lambda t: (self._signs[0] * primary_value(t), t.number))
        del self._top[TOP_K:]
        if len(self.directions) > 1:
            self._place_on_front(entry)

    def _place_on_front(self, entry: TrialSummary) -> None:
        if any(dominates(other, entry, self.directions) for other in self._pareto):
            return
        self._pareto = [other for other in self._pareto if not dominates(entry, other, self.directions)]
        self._pareto.append(entry)
        self._pareto.sort(key=lambda t: t.number)

    def snapshot(self) -> JobSnapshot:
        """The snapshot as of now (immutable)."""
        counts = {state: n for state, n in sorted(self._counts.items()) if n}
        return JobSnapshot(counts=counts, directions=self.directions, top=tuple(self._top), pareto=tuple(self._pareto))


def _trial_json(trial: TrialSummary) -> dict[str, Any]:
    return {"number": trial.number, "value": trial.value, "values": list(trial.values or ()), "params": trial.params}


def _trial_from_json(data: dict[str, Any]) -> TrialSummary:
    values = tuple(float(v) for v in data.get("values") or ())
    return TrialSummary(
        number=int(data["number"]),
        state=TrialState.COMPLETE,
        value=data.get("value"),
        params=dict(data.get("params") or {}),
        values=values or None,
    )
