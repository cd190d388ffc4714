"""A search's durable per-trial writes, made by a child process: its Optuna study and its MLflow trial runs.

Profiled, the service's per-trial overhead was its own durable writes on Tune's driver
(benchmarks/overhead.py: ~10 ms per trial for the study's three transactions, ~10 ms for the
MLflow runs). Made in a thread they still hold the driver's one GIL; made here, they run on
another core, and the driver only pickles a message per write. Writes are carried out in the
order they were sent, so a trial's end reaches MLflow after its study row exists. One child
serves every search of a process (:func:`shared`; a runner's jobs side by side too), each job
on its own state there (:class:`JobWriter`). A second child of the same kind, the plotter
(:func:`shared_plotter`, at the lowest CPU priority), draws each job's end-of-job plots from its
durable study after the job's result was returned.

What stays true:
- the in-memory working study decides everything (trial numbers, what the sampler sees);
  the child only makes it durable, checking every number (:class:`StudyDiverged`);
- a write that fails comes back on its future, raised from what it was raised from in the child
  (the tracking writer tells a broken connection by it); a job's writes are all waited for before it
  reports its result (``WorkingStudy.drain``, then :meth:`JobWriter.close`);
- the child runs in its own session, so a signal to the runner's process group (Ctrl-C,
  SIGTERM: the runner stops its jobs itself, then closes the child) does not cut it short; when
  the driver is gone (its end of the pipe closes), the child finishes what it was sent and
  exits: a killed runner loses no write it had already sent.

Off with ``AUTOML_WRITE_BEHIND=0``: the same writes are then made in the driver process.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl.tracking import RunUpdate

logger = logging.getLogger(__name__)

ENV = "AUTOML_WRITE_BEHIND"


def enabled() -> bool:
    """Whether searches make their durable writes in a child process (the default)."""
    return os.environ.get(ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


class WriterGone(RuntimeError):
    """The writer process exited before it answered."""


class RemoteError(RuntimeError):
    """An error raised in the writer process whose own type could not be sent back."""


class WriteBehind:
    """The driver's end: sends writes to the child in order; each returns a future of its result."""

    def __init__(self, *, nice: int = 0) -> None:
        """Start the child; ``nice`` > 0 runs it at that lower CPU priority (the plotter: its work waits for idle cores)."""
        # A fresh interpreter (never a fork: the driver runs Ray's threads), started as a module
        # rather than by multiprocessing's spawn, which would re-run the caller's __main__ script.
        here, there = socket.socketpair()
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "automl.engine.write_behind", str(there.fileno()), str(nice)],
            pass_fds=(there.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=2,  # stdout belongs to the CLI (`automl run --json`)
            env=env,
            start_new_session=True,  # a signal to the runner's process group is the runner's to handle
        )
        there.close()
        self._conn: Connection = Connection(here.detach())
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="automl-writer-replies", daemon=True)
        self._reader.start()

    def send(self, op: str, *args: Any) -> Future[Any]:
        """Queue ``op(*args)`` in the child after everything sent before it."""
        future: Future[Any] = Future()
        request = next(self._ids)
        with self._pending_lock:
            self._pending[request] = future
        try:
            with self._send_lock:
                if self._closed:
                    raise WriterGone("the writer process was closed")
                self._conn.send((request, op, args))
        except (OSError, ValueError, WriterGone) as exc:
            with self._pending_lock:
                self._pending.pop(request, None)
            future.set_exception(exc if isinstance(exc, WriterGone) else WriterGone(f"the writer process is gone: {exc}"))
        return future

    def call(self, op: str, *args: Any) -> Any:
        """``send`` and wait for the result (raises the child's error)."""
        return self.send(op, *args).result()

    def barrier(self) -> None:
        """Wait until the child has done everything sent before (by every job): its plots too."""
        with contextlib.suppress(WriterGone):
            self.call("ping")

    def _read(self) -> None:
        while True:
            try:
                request, ok, value = self._conn.recv()
            except (EOFError, OSError, TypeError, ValueError):  # the child's end closed, or ours was
                break
            with self._pending_lock:
                future = self._pending.pop(request, None)
            if future is not None:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(relinked(value))
        with self._pending_lock:
            left, self._pending = self._pending, {}
        for future in left.values():
            future.set_exception(WriterGone("the writer process exited before it answered"))

    def close(self, timeout: float = 120.0, *, reap: bool = True) -> None:
        """Let the child finish what it was sent, then stop it.

        ``reap=False`` (at interpreter exit) leaves the exited child to the OS: Python 3.12
        refuses to start the reaper thread once the interpreter is shutting down.
        """
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(None)
        # The child answers what it was sent, closes its end and exits; its interpreter's
        # teardown is no reason to keep the job waiting, so it is reaped in the background.
        self._reader.join(timeout)
        self._conn.close()
        if self._reader.is_alive():
            self._process.kill()
        if reap:
            threading.Thread(target=self._process.wait, name="automl-writer-reaper", daemon=True).start()

    def alive(self) -> bool:
        """Whether the child still takes writes."""
        return not self._closed and self._process.poll() is None and self._reader.is_alive()

    def job(self, key: str) -> JobWriter:
        """A handle for one job's writes (its own study and tracker in the child)."""
        return JobWriter(self, key)


class JobWriter:
    """One job's end of a :class:`WriteBehind`: every operation names the job."""

    def __init__(self, remote: WriteBehind, key: str) -> None:
        self.remote = remote
        self.key = key

    def send(self, op: str, *args: Any) -> Future[Any]:
        """Queue ``op`` for this job after everything sent before it (by any job)."""
        return self.remote.send(op, self.key, *args)

    def call(self, op: str, *args: Any) -> Any:
        """``send`` and wait for the result (raises the child's error)."""
        return self.send(op, *args).result()

    def close(self, *, wait: bool = True) -> None:
        """Let the child forget the job once it has done everything of it; ``wait`` for that.

        Not waiting is for a job whose writes were all answered already, with only work that
        nobody waits for left behind them (its plots).
        """
        done = self.remote.send("close_job", self.key)
        if wait:
            with contextlib.suppress(WriterGone):
                done.result()


_SHARED: dict[str, WriteBehind] = {}
_SHARED_LOCK = threading.Lock()
WRITER, PLOTTER = "writer", "plotter"
PLOTTER_NICE = 19  # the end-of-job plots use cores nothing else wants


def shared() -> WriteBehind:
    """This process's writer (started on first use, started again if it died): every search of a
    process, and every job of a runner, shares one, so its start-up (importing MLflow: over a
    second of CPU) is paid once. Closed when the interpreter exits."""
    return _shared(WRITER, 0)


def shared_plotter() -> WriteBehind:
    """This process's plotter: a second child, at the lowest CPU priority, that draws each job's
    plots from its durable study after the job's result was returned. Apart from the writer so
    that a job's plots never hold up the next job's writes, and niced so that they take only
    cores the trials leave idle. Closed (its plots finished) when the interpreter exits."""
    return _shared(PLOTTER, PLOTTER_NICE)


def _shared(role: str, nice: int) -> WriteBehind:
    with _SHARED_LOCK:
        child = _SHARED.get(role)
        if child is None or not child.alive():
            if not _SHARED:
                atexit.register(_close_shared)
            child = _SHARED[role] = WriteBehind(nice=nice)
        return child


def _close_shared() -> None:
    with _SHARED_LOCK:
        for child in _SHARED.values():
            child.close(reap=False)


# -- the child ---------------------------------------------------------------------------------


TRIAL_RUN_OPS = frozenset({"create_trial_run", "find_or_create_trial_run", "update_run", "reopen_trial"})
JOB_OPS = frozenset({"open_study", "study_create", "study_write", "open_tracking", "log_plots"})


class _JobWrites:
    """One job's study and MLflow tracker in the child, opened when first asked."""

    def __init__(self) -> None:
        self.storage: Any = None
        self.study_id: int | None = None
        self.study_name = ""
        self.trial_ids: dict[int, int] = {}  # trial number -> durable trial id
        self.tracker: Any = None

    def open_study(self, storage_url: str, study_name: str) -> None:
        from automl.engine.studies import open_storage

        self.storage = open_storage(storage_url)
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self.study_name = study_name

    def study_create(self, template: Any) -> None:
        from automl.engine.working_study import create_durable_trial

        assert self.study_id is not None, "open_study comes first"
        self.trial_ids[template.number] = create_durable_trial(self.storage, self.study_id, self.study_name, template)

    def study_write(self, method: str, number: int, *args: Any) -> None:
        from automl.engine.working_study import durably

        durable_id = self.trial_ids.get(number)
        if durable_id is None:
            durable_id = durably(self.storage.get_trial_id_from_study_id_trial_number, self.study_id, number)
            self.trial_ids[number] = durable_id
        durably(getattr(self.storage, method), durable_id, *args)

    def open_tracking(self, tracking_uri: str, artifact_root: str | None, experiment_id: str, parent_run_id: str) -> None:
        from automl.tracking import MlflowTracker

        self.tracker = MlflowTracker(tracking_uri, artifact_root=artifact_root)
        self.tracker.experiment_id = experiment_id
        self.tracker.parent_run_id = parent_run_id

    def log_plots(self, metrics: list[str], stop_reason: str | None) -> str | None:
        """Draw the job's plots from its durable study onto its parent run; what failed, in one line."""
        import optuna

        from automl.tracking.plots import draw_search_plots

        study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        return draw_search_plots(self.tracker, study, metrics, stop_reason=stop_reason)[1]


class _Writer:
    """What the child does: the writes of every job its driver runs, each job's on its own state."""

    def __init__(self) -> None:
        self.jobs: dict[str, _JobWrites] = {}

    def run(self, op: str, args: tuple[Any, ...]) -> Any:
        if op == "ping":
            return os.getpid()
        if op == "close_job":
            self.jobs.pop(args[0], None)
            return None
        job, *rest = args
        writes = self.jobs.setdefault(job, _JobWrites())
        if op in TRIAL_RUN_OPS:  # RemoteTrialRuns: the job's MlflowTracker's own methods
            return getattr(writes.tracker, op)(*rest)
        if op not in JOB_OPS:
            raise AttributeError(f"the writer process has no operation {op!r}")
        return getattr(writes, op)(*rest)


def _serve(conn: Connection, nice: int = 0) -> None:
    """The child's loop: run each request in order and answer it; stop at ``None`` or when the driver is gone."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if nice:
        os.nice(nice)
    # Import what the writes need now, while the driver is still starting Ray and the job's runs
    # (MLflow's client alone is over a second of CPU).
    try:
        import mlflow.tracking  # noqa: F401

        import automl.engine.studies  # noqa: F401 - the study storage
    except ImportError:
        pass
    writer = _Writer()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            conn.close()
            return
        request, op, args = message
        try:
            reply = (request, True, writer.run(op, args))
        except BaseException as exc:  # noqa: BLE001 - every error goes back to the caller
            reply = (request, False, sendable_chain(exc))
        with contextlib.suppress(OSError, ValueError):  # the driver is gone; keep making the writes it sent
            conn.send(reply)


def sendable_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during, each as it can cross to the driver.

    Pickling an exception drops its ``__cause__`` and ``__context__``, and MLflow wraps a
    transport's error (a connection cut off mid-answer) in its own: sent alone, the wrapper would
    hide that the request may have been carried out, and the tracking writer, which holds and
    replays such a write (``connection_broke``), would give it up instead.
    """
    from automl.errors import exception_chain

    return [_sendable(e) for e in exception_chain(exc)]


def relinked(chain: list[BaseException]) -> BaseException:
    """The first exception of :func:`sendable_chain`'s list, raised from the next, and so on."""
    for outer, inner in itertools.pairwise(chain):
        outer.__cause__ = inner
    return chain[0]


def _sendable(exc: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RemoteError(f"{type(exc).__name__}: {exc}")


class RemoteTrialRuns:
    """The :class:`~automl.tracking.TrialRuns` writes of :class:`~automl.tracking.MlflowTracker`, made by the
    writer process (each call waits for its answer: it runs on the driver's tracking thread)."""

    def __init__(self, remote: JobWriter) -> None:
        self.remote = remote

    def create_trial_run(self, number: int, tags: Mapping[str, str], start_time: int | None = None) -> str:
        return self.remote.call("create_trial_run", number, tags, start_time)

    def find_or_create_trial_run(self, number: int, tags: Mapping[str, str], start_time: int | None = None) -> str:
        return self.remote.call("find_or_create_trial_run", number, tags, start_time)

    def update_run(self, run_id: str, update: RunUpdate) -> None:
        self.remote.call("update_run", run_id, update)

    def reopen_trial(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.remote.call("reopen_trial", run_id, tags)


__all__ = [
    "ENV",
    "JobWriter",
    "RemoteError",
    "RemoteTrialRuns",
    "WriteBehind",
    "WriterGone",
    "enabled",
    "shared",
    "shared_plotter",
]


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
