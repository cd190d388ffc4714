"""The peer benchmark's contract between tasks, methods and the scoring (issue 19).

Every method (the service, plain Optuna, random search, Syne Tune, SMAC3, DEHB) sees a task
only through :class:`PeerTask` and reports only through a :class:`Ledger`, so all of them are
charged the same budget the same way:

- a task is minimised; its space is the service's space format (``{"lr": {"type": "float",
  "low": 1e-4, "high": 0.1, "log": True}, "units": {"type": "int", ...}, "act": {"type":
  "categorical", "choices": [...]}}``), which each adapter turns into its own peer's format;
- fidelity is epochs, ``min_epochs`` to ``max_epochs``; ``task.curve(config, seed)`` yields the
  loss after epoch 1, 2, ... (a real training trains one more epoch per step; a synthetic
  function computes it). A method that resumes a trial keeps pulling from the same iterator; a
  method that restarts a trial at a higher fidelity starts a new curve and pays the epochs again;
- every epoch trained is charged: the method calls ``ledger.record(trial_key, config, epoch,
  loss)`` once per epoch it pulled (from any thread). The ledger stamps each with the wall-clock
  seconds since the method started. A method whose trials run in other processes (the service
  on Ray, Syne Tune's local backend) records afterwards from what they returned, passing each
  epoch's own ``seconds`` (measured from ``ledger.started``, ``time.perf_counter`` on this
  machine, or converted from ``time.time`` stamps with ``ledger.wall_started``);
- the budget axes are those seconds and the cumulative epochs in the order of the seconds
  (``Ledger.rows``);
- a method stops asking for epochs once ``ledger.exhausted()`` (cumulative epochs at or past
  the budget); epochs recorded past the budget are cut when scored, so overshooting gains nothing.

What must stay true: the scoring (``peer_score``) reads only ledgers, never a method's own
idea of its incumbent. The incumbent at budget B is the config with the lowest loss among
records at ``max_epochs`` with cumulative epochs <= B; its regret is exact for a synthetic task
(``optimum`` known) and normalised by the best value any method ever reached for a training task.

Optional members, read with ``getattr`` (a task or method without them works as before): a task's
``exact(config)``, the noise-free loss at ``max_epochs`` where known (a synthetic task's; the
incumbent is still picked by its recorded loss, its regret is computed from this), and its
``scale`` (what a normalised regret of 1 is); a method's ``unsuited(task)``, why it does not run
on that task (``None`` when it does), reported like ``available()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class PeerTask(Protocol):
    """One task of the benchmark, as every method sees it."""

    name: str
    kind: str  # "synthetic" or "training"
    held_out: bool  # never used to tune the service's defaults; reported separately
    space: Mapping[str, Mapping[str, Any]]  # the service's space format
    min_epochs: int
    max_epochs: int
    optimum: float | None  # known minimum at max_epochs (synthetic tasks), else None

    def curve(self, config: Mapping[str, Any], seed: int) -> Iterator[float]:
        """The loss after each epoch 1..max_epochs of training ``config`` (seeded by ``seed``)."""
        ...


@dataclass(frozen=True)
class Record:
    """One epoch a method paid for."""

    trial: str  # the method's own key for the trial (a resumed trial keeps its key)
    config: Mapping[str, Any]
    epoch: int  # the fidelity this loss is at
    loss: float
    seconds: float  # since the method's run started


@dataclass
class Ledger:
    """What one method spent on one task at one seed; thread-safe."""

    budget_epochs: int
    started: float = field(default_factory=time.perf_counter)
    wall_started: float = field(default_factory=time.time)  # the same instant as ``started``, in time.time()
    records: list[Record] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, trial: str, config: Mapping[str, Any], epoch: int, loss: float, seconds: float | None = None) -> None:
        at = time.perf_counter() - self.started if seconds is None else float(seconds)
        with self._lock:
            self.records.append(Record(trial, dict(config), int(epoch), float(loss), at))

    @property
    def spent(self) -> int:
        return len(self.records)

    def exhausted(self) -> bool:
        return self.spent >= self.budget_epochs

    def rows(self) -> list[list[Any]]:
        """Compact rows for the results JSON, in the order of their seconds:
        [trial, epoch, loss, seconds, spent, config], ``spent`` the cumulative epochs."""
        with self._lock:
            ordered = sorted(self.records, key=lambda r: r.seconds)
        return [[r.trial, r.epoch, r.loss, round(r.seconds, 4), i, dict(r.config)] for i, r in enumerate(ordered, 1)]


class Method(Protocol):
    """One way of searching: a peer through its own API, or the service with one strategy."""

    name: str  # e.g. "service:auto", "syne_tune:asha", "smac3:hyperband", "dehb", "optuna:tpe+hyperband", "random"

    def available(self) -> str | None:
        """``None`` when it can run here, else why not (an import error, a missing package): the
        results say so instead of dropping the method."""
        ...

    def run(self, task: PeerTask, seed: int, ledger: Ledger, n_workers: int) -> None:
        """Search ``task`` with ``n_workers`` trials at once, charging every epoch to ``ledger``,
        until ``ledger.exhausted()``."""
        ...
