"""A job's Optuna study as the sampler sees it: an in-memory working copy of the durable study.

Optuna on an RDB storage re-reads the study and commits once per parameter on every ``ask``
(about 16 transactions and 30 ms a trial on SQLite, on the driver's loop that also feeds Ray
Tune). Here the sampler asks and is told on an in-memory copy, loaded from the durable study
when the job starts, and every change is written through to the durable study before the
caller goes on, in as few transactions as Optuna's storage API allows: one when a trial is
created with its parameters, one per intermediate report, one when it ends. The durable study
stays the record a resumed job, ``automl status`` and warm starts read; a crash loses nothing
that was written, because nothing runs before its trial is written. A write that meets a
restarting or locked database is retried with backoff for up to ``RETRY_S`` seconds.

Only the process that holds the job's lease writes its study, so trial numbers agree between
the two copies; :class:`StudyDiverged` is raised if they ever do not.

Where the writes go is the :class:`DurableTrials` seam: made here (:class:`StorageTrials`), or,
in a search, through the job's writer process (:class:`RemoteTrials`, :mod:`automl.engine.write_behind`):
sent in order, not waited for one by one, drained before the job reports its result.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from automl.errors import AutomlError, is_transient
from automl.retry import retrying
from automl.states import TrialState, from_optuna

if TYPE_CHECKING:
    from concurrent.futures import Future

    import optuna
    from optuna.trial import FrozenTrial


logger = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_S = 30.0  # how long a durable write waits for a database that restarts or is locked


class TrialWrites(Protocol):
    """The job's writer process as :class:`RemoteTrials` sees it
    (:class:`automl.engine.write_behind.JobWriter`): sent in order, each answered by a future."""

    def send(self, op: str, *args: Any) -> Future[Any]: ...


class DurableTrials(Protocol):
    """The seam between the working copy and the durable study: where its trial writes go.

    :class:`StorageTrials` makes each write in this process, on the study's RDB storage;
    :class:`RemoteTrials` sends them to the job's writer process. Either keeps the order the
    writes were made in, and :meth:`drain` returns once every one is durable (or raises the
    first that failed).
    """

    def create(self, template: FrozenTrial) -> None:
        """Write a new trial (number, parameters, state, user attributes) in one transaction."""
        ...

    def write(self, number: int, method: str, *args: Any) -> None:
        """``BaseStorage.<method>(trial id of number, *args)``: a parameter, a report, the end."""
        ...

    def drain(self) -> None:
        """Wait until every write made so far is durable; raise the first that failed."""
        ...


def durably(call: Callable[..., T], *args: Any) -> T:
    """Run one durable write, retrying transient database errors with backoff for up to RETRY_S."""
    return retrying(
        lambda: call(*args),
        retryable=is_transient,
        window_s=RETRY_S,
        first_pause_s=0.2,
        max_pause_s=5.0,
        what="the study's database",
        logger=logger,
    )


class StudyDiverged(AutomlError):
    """The durable study numbered a trial differently from the working copy (another writer)."""


def create_durable_trial(storage: optuna.storages.BaseStorage, study_id: int, study_name: str, template: FrozenTrial) -> int:
    """Write ``template`` as a new trial of the durable study; its durable id.

    Raises:
        StudyDiverged: the study gave the trial another number than the working copy did.
    """
    durable_id = durably(storage.create_new_trial, study_id, template)
    durable_number = durably(storage.get_trial_number_from_id, durable_id)
    if durable_number != template.number:
        raise StudyDiverged(
            f"study {study_name!r} was written by another process: trial {template.number} "
            f"was stored as {durable_number}; is a second runner holding this job?"
        )
    return durable_id


class StorageTrials:
    """Trial writes made here, each waited for (retried while the database restarts or is locked).

    ``ids`` maps trial numbers to durable trial ids; the trials created here are added to it.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, study_id: int, study_name: str, ids: dict[int, int]) -> None:
        self.storage = storage
        self.study_id = study_id
        self.study_name = study_name
        self.ids = ids

    def create(self, template: FrozenTrial) -> None:
        self.ids[template.number] = create_durable_trial(self.storage, self.study_id, self.study_name, template)

    def write(self, number: int, method: str, *args: Any) -> None:
        durably(getattr(self.storage, method), self.ids[number], *args)

    def drain(self) -> None:
        """Nothing to wait for: every write was made before it returned."""


class RemoteTrials:
    """Trial writes sent to the job's writer process (its study already opened there), in order,
    not waited for one by one. A write that failed is raised at the next write (a diverged study
    stops the job then, not only at the end) or by :meth:`drain`."""

    def __init__(self, remote: TrialWrites) -> None:
        self.remote = remote
        self._in_flight: list[Future[Any]] = []

    def create(self, template: FrozenTrial) -> None:
        self._send("study_create", template)

    def write(self, number: int, method: str, *args: Any) -> None:
        self._send("study_write", method, number, *args)

    def drain(self) -> None:
        in_flight, self._in_flight = self._in_flight, []
        for future in in_flight:
            future.result()

    def _send(self, op: str, *args: Any) -> None:
        still = []
        for future in self._in_flight:
            if future.done():
                future.result()
            else:
                still.append(future)
        still.append(self.remote.send(op, *args))
        self._in_flight = still


class WorkingStudy:
    """An in-memory study (``memory``) kept equal to a durable one, trial by trial.

    Args:
        durable_storage: the job's Optuna RDB storage (not wrapped in Optuna's cache).
        study_name: the job's study, created in ``durable_storage`` if it does not exist.
        directions: ``"minimize"``/``"maximize"`` per objective.
        sampler: the sampler the working copy asks.
    """

    def __init__(
        self,
        durable_storage: optuna.storages.BaseStorage,
        study_name: str,
        directions: Sequence[Literal["minimize", "maximize"]],
        sampler: optuna.samplers.BaseSampler,
    ) -> None:
        import optuna

        self.durable_storage = durable_storage
        self.durable = optuna.create_study(
            storage=durable_storage, study_name=study_name, directions=list(directions), load_if_exists=True
        )
        self._durable_study_id = durable_storage.get_study_id_from_name(study_name)
        self.memory = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(),
            study_name=study_name,
            directions=list(directions),
            sampler=sampler,
            pruner=optuna.pruners.NopPruner(),
        )
        self._memory_study_id = self.memory._study_id
        self._durable_ids: dict[int, int] = {}  # trial number -> durable trial id
        self._memory_ids: dict[int, int] = {}  # trial number -> working-copy trial id
        self._waiting: set[int] = set()  # numbers enqueued in the durable study, not yet started
        self._persisted_params: dict[int, set[str]] = {}
        self.trials: DurableTrials = StorageTrials(durable_storage, self._durable_study_id, study_name, self._durable_ids)
        for trial in durable_storage.get_all_trials(self._durable_study_id, deepcopy=False):
            self._copy_in(trial)

    def write_behind(self, remote: TrialWrites) -> None:
        """Make the trial writes from now on through the writer process ``remote`` (its study
        already opened there), without waiting for each: :meth:`drain` waits for them."""
        self.drain()
        self.trials = RemoteTrials(remote)

    def drain(self) -> None:
        """Wait until every trial write made so far is durable; raise the first that failed."""
        self.trials.drain()

    def _create(self, template: FrozenTrial) -> None:
        self.trials.create(template)
        self._durable_ids.setdefault(template.number, -1)  # known durable (the writer process holds the id)

    def _write(self, number: int, method: str, *args: Any) -> None:
        """``durable_storage.<method>(trial id, *args)`` for trial ``number``, wherever the writes go."""
        self.trials.write(number, method, *args)

    def _copy_in(self, trial: FrozenTrial) -> None:
        memory_id = self.memory._storage.create_new_trial(self._memory_study_id, template_trial=trial)
        number = self.memory._storage.get_trial_number_from_id(memory_id)
        if number != trial.number:
            raise StudyDiverged(f"study {self.durable.study_name!r}: trial {trial.number} copied as {number}")
        self._durable_ids[number] = trial._trial_id
        self._memory_ids[number] = memory_id
        self._persisted_params[number] = set(trial.params)
        if from_optuna(trial.state) == TrialState.WAITING:
            self._waiting.add(number)

    def trial(self, number: int) -> optuna.Trial:
        """The working copy's live trial with this number (to suggest into or report to)."""
        import optuna

        return optuna.trial.Trial(self.memory, self._memory_ids[number])

    def enqueue(self, params: dict[str, Any]) -> None:
        """Queue a configuration to be tried before any sampled one (durable first)."""
        before = len(self._durable_ids)
        self.durable.enqueue_trial(params, skip_if_exists=True)
        for trial in self.durable_storage.get_all_trials(self._durable_study_id, deepcopy=False)[before:]:
            self._copy_in(trial)

    def started(self, trial: optuna.Trial, user_attrs: dict[str, Any]) -> None:
        """Write a trial the working copy just created (or resumed) with its parameters.

        A new trial is one transaction; an enqueued or resumed one, already in the durable
        study, gets its state and the parameters it did not have yet.
        """
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        frozen = self.memory._storage.get_trial(trial._trial_id)
        number = frozen.number
        self._memory_ids.setdefault(number, trial._trial_id)
        if number not in self._durable_ids:
            self._create(copy.copy(frozen))
            self._persisted_params[number] = set(frozen.params)
            return
        import optuna

        if number in self._waiting:
            self._write(number, "set_trial_state_values", optuna.trial.TrialState.RUNNING)
            self._waiting.discard(number)
        known = self._persisted_params.setdefault(number, set())
        for name, value in frozen.params.items():
            if name not in known:
                distribution = frozen.distributions[name]
                self._write(number, "set_trial_param", name, distribution.to_internal_repr(value), distribution)
                known.add(name)
        for key, value in user_attrs.items():
            self._write(number, "set_trial_user_attr", key, value)

    def set_durable_user_attr(self, number: int, key: str, value: Any) -> None:
        """Write a user attribute of trial ``number`` to the durable study only (in order with its other writes)."""
        self._write(number, "set_trial_user_attr", key, value)

    def report(self, trial: optuna.Trial, value: float, step: int) -> None:
        """Record an intermediate value in both copies."""
        trial.report(value, step)
        self._write(trial.number, "set_trial_intermediate_value", step, value)

    def tell(
        self,
        trial: optuna.Trial,
        values: float | Sequence[float] | None,
        state: optuna.trial.TrialState,
        user_attrs: dict[str, Any] | None = None,
    ) -> None:
        """End a trial in both copies, with the state and value(s) Optuna settles on.

        (A PRUNED trial's value is its last intermediate value, as ``Study.tell`` decides.)
        """
        for key, value in (user_attrs or {}).items():
            trial.set_user_attr(key, value)
        self.memory.tell(trial, values, state=state)
        frozen = self.memory._storage.get_trial(trial._trial_id)
        for key, value in (user_attrs or {}).items():
            self._write(frozen.number, "set_trial_user_attr", key, value)
        self._write(frozen.number, "set_trial_state_values", frozen.state, frozen.values)
