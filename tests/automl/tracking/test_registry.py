"""The ``champion`` alias lands on the best version whatever order racing jobs write in.

Two jobs of one name finishing at once, in two processes (two runners), each register a version and
then settle the alias. The race that used to be lost: both read the champion before either moves
it, the better job moves it first, and the worse one, on what it read, moves it after, to itself.
The test forces that interleaving in real processes against a real SQLite registry: each racer's
client holds its first alias write until both are there, and lets the better job write first.
(On the code before ``settle_champion``, the worse version ended champion.) A racer that never
writes does not hang the other: the holds give up after ``HOLD_S``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

HOLD_S = 30.0  # how long a racer's first alias write waits for the other racer
NAME = "raced"


@pytest.fixture(scope="module")
def racers() -> Iterator[multiprocessing.context.BaseContext]:
    """A forkserver context whose server has imported MLflow and torch: the racers start in milliseconds."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlflow", "mlflow.pytorch", "torch", "automl.tracking"])
    yield context


class _HeldClient:
    """An ``MlflowClient`` whose first ``set_registered_model_alias`` waits its turn; all else passes through."""

    def __init__(self, client: Any, *, first: bool, both_there: Any, first_wrote: Any) -> None:
        self._client = client
        self._first = first
        self._both_there = both_there
        self._first_wrote = first_wrote
        self._held = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        if self._held:
            self._client.set_registered_model_alias(name, alias, version)
            return
        self._held = True
        with contextlib.suppress(threading.BrokenBarrierError):
            self._both_there.wait(timeout=HOLD_S)  # both racers have read what they act on
        if not self._first:
            self._first_wrote.wait(timeout=HOLD_S)
        try:
            self._client.set_registered_model_alias(name, alias, version)
        finally:
            if self._first:
                self._first_wrote.set()


def _register(uri: str, artifacts: str, value: float, trial: int, client: Any = None) -> str:
    """Register a version of ``NAME`` as a job's best model is registered; its version number."""
    import torch

    from automl.tracking import MlflowTracker
    from automl.tracking.registry import ModelOrigin

    tracker = MlflowTracker(uri, artifact_root=artifacts)
    tracker.start_job(experiment=NAME, run_name=f"{NAME}-{trial:08x}", params={}, tags={}, artifacts={})
    if client is not None:
        tracker.client = client(tracker.client)
    origin = ModelOrigin(NAME, f"{NAME}-{trial:08x}", None, trial, f"trial-{trial:03d}", "val_accuracy", "max", value, {})
    run_id = tracker.create_trial_run(trial, {})
    logged = tracker.log_model(run_id, torch.nn.Linear(2, 1), registered_name=NAME, origin=origin)
    assert logged.version is not None
    return logged.version


def _racer(
    uri: str, artifacts: str, value: float, trial: int, first: bool, both_there: Any, first_wrote: Any, results: Any
) -> None:
    try:

        def held(client: Any) -> _HeldClient:
            return _HeldClient(client, first=first, both_there=both_there, first_wrote=first_wrote)

        results.put((trial, "ok", _register(uri, artifacts, value, trial, held)))
    except BaseException:  # noqa: BLE001 - reported to the test, which names it
        both_there.abort()
        first_wrote.set()
        results.put((trial, "error", traceback.format_exc()))


def _champion(uri: str) -> SimpleNamespace:
    from mlflow import MlflowClient

    from automl.tracking.registry import CHAMPION

    version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(NAME, CHAMPION)
    return SimpleNamespace(version=str(version.version), value=float(version.tags["automl.metric_value"]))


@pytest.mark.slow
def test_racing_jobs_leave_the_best_version_champion(tmp_path: Path, racers: multiprocessing.context.BaseContext) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = (tmp_path / "artifacts").as_uri()
    first = _register(uri, artifacts, 0.5, 0)  # the champion the racers both beat
    assert _champion(uri).version == first

    both_there, first_wrote, results = racers.Barrier(2), racers.Event(), racers.Queue()
    # The better job writes first, the worse one last: the order that crowned the worse version.
    racing = {1: (0.9, True), 2: (0.8, False)}
    processes = [
        racers.Process(target=_racer, args=(uri, artifacts, value, trial, writes_first, both_there, first_wrote, results))
        for trial, (value, writes_first) in racing.items()
    ]
    for process in processes:
        process.start()
    got = {trial: (status, value) for trial, status, value in (results.get(timeout=180) for _ in processes)}
    for process in processes:
        process.join(timeout=30)
    errors = [f"racer {trial}:\n{value}" for trial, (status, value) in sorted(got.items()) if status == "error"]
    assert not errors, "\n".join(errors)

    champion = _champion(uri)
    assert champion.value == 0.9 and champion.version == got[1][1], f"versions {got}: champion {champion}"

    # Then a job one at a time: a worse one leaves it, a better one takes it.
    _register(uri, artifacts, 0.85, 3)
    assert _champion(uri).version == got[1][1]
    best = _register(uri, artifacts, 0.95, 4)
    assert _champion(uri).version == best


def test_the_champion_is_what_one_job_at_a_time_would_have_left() -> None:
    from automl.tracking.registry import champion_of

    def version(number: int, value: float | None, metric: str = "val_accuracy", mode: str = "max") -> SimpleNamespace:
        tags = {} if value is None else {"automl.metric": metric, "automl.mode": mode, "automl.metric_value": repr(value)}
        return SimpleNamespace(version=str(number), tags=tags)

    assert champion_of([]) is None and champion_of([version(1, None)]) is None  # none of a job's: no champion
    # In version order, whatever order they are listed in: a tie keeps the older.
    assert champion_of([version(3, 0.9), version(1, 0.8), version(2, 0.9)]) == "2"
    assert champion_of([version(1, 0.8), version(2, None), version(3, 0.7)]) == "1"
    # Another metric gives way (the later job defines what the model optimises), and is then compared on its own terms.
    history = [version(1, 0.9), version(2, 0.5, "val_loss", "min"), version(3, 0.6, "val_loss", "min")]
    assert champion_of(history) == "2"
    assert champion_of([*history, version(4, 0.4, "val_loss", "min")]) == "4"
    assert champion_of([*history, version(4, 0.95)]) == "4"  # back to accuracy: not comparable with the loss, takes it
