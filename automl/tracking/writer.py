"""The background writer of a search's tracking (MLflow) and job store writes, in order.

Tune's driver loop hands its writes to :class:`TrackingWriter` and never waits on a store.
What must stay true: writes run in the order they were queued (a run's updates after its
creation); a tracking write that fails while the server is down is held and replayed, never
raised into the search; job store writes never wait behind held tracking writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from automl.errors import exception_chain
from automl.tracking import RunUpdate

logger = logging.getLogger(__name__)


def connection_broke(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from or during) is a failed or broken connection,
    not an answer: MLflow's REST client wraps the transport's error in an ``MlflowException``."""
    import http.client

    import requests
    import urllib3

    transport = (
        ConnectionError,  # refused, reset
        http.client.IncompleteRead,  # the answer cut off
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.NewConnectionError,
    )
    return any(isinstance(e, transport) for e in exception_chain(exc))


class TrackingWriter:
    """Makes the MLflow (and job store) writes of a search in one background thread, in order.

    Tune's driver loop then never waits on a tracking store: a write is queued in
    microseconds, and FIFO order keeps every run's writes after its creation. Updates of one
    run that queue up behind each other (:meth:`submit_update`: params, reports, the end) are
    merged into one, so when the driver is busy a trial costs MLflow a create, one
    ``log_batch`` and an end instead of a call per event.

    When a tracking write fails and ``reachable()`` says the tracking server is down, or its
    connection broke (:func:`connection_broke`: the request may have been carried out), the write
    and every tracking write after it wait in a backlog, in order, while the search goes on;
    the server is asked again at most every ``retry_s`` seconds, and the backlog is replayed as
    soon as it answers. Job store writes (:meth:`submit_store`) never wait behind the backlog.
    What is still in the backlog when the search ends (:meth:`flush` gave up) is counted in
    :attr:`untracked` and reported once through ``on_error``.
    """

    def __init__(
        self,
        on_error: Callable[[str], None],
        *,
        reachable: Callable[[], bool] | None = None,
        retry_s: float = 5.0,
    ) -> None:
        self._on_error = on_error
        self._reachable = reachable
        self.retry_s = retry_s
        self._queue: deque[_Write] = deque()
        self._wakeup = threading.Condition()
        self._closed = False
        self._backlog: deque[_Write] = deque()
        self._next_probe = 0.0
        self.down_since: float | None = None
        self.untracked = 0
        self.replayed = 0
        self.merged = 0
        self._thread = threading.Thread(target=self._work, name="automl-tracking", daemon=True)
        self._thread.start()

    def submit(
        self, call: Callable[..., Any], *args: Any, replay: Callable[..., Any] | None = None, **kwargs: Any
    ) -> Future[Any]:
        """Queue a tracking (MLflow) write; its future holds the call's result, or ``None`` if it failed.

        ``replay`` (same arguments) replaces ``call`` when a held write is sent again: a request
        the server carried out just before the connection broke must not be done twice (a
        second run for one trial).
        """
        return self._put(_Write(call, args, kwargs, [Future()], replay, TRACKING))

    def submit_update(self, key: str, update: RunUpdate, call: Callable[[RunUpdate], Any]) -> Future[Any]:
        """Queue ``call(update)``, a write of run ``key``'s update; it merges with the run's next
        queued updates (``RunUpdate.merged``) when they are waiting together."""
        return self._put(_Write(call, (update,), {}, [Future()], None, TRACKING, key))

    def submit_store(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue a job store write: in order with the rest, but never held back while MLflow is down."""
        return self._put(_Write(call, args, kwargs, [Future()], None, STORE))

    def _put(self, write: _Write) -> Future[Any]:
        with self._wakeup:
            if self._closed:
                raise RuntimeError("the tracking writer is closed")
            self._queue.append(write)
            self._wakeup.notify()
        return write.futures[0]

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue and not self._closed:
                    self._wakeup.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            for write in self._coalesce(batch):
                if write.kind == STORE:
                    self._execute(write)
                elif write.kind == CONTROL:
                    write.resolve(write.call())
                else:
                    self._track(write)

    def _coalesce(self, batch: list[_Write]) -> list[_Write]:
        """``batch`` with each run's update merged into that run's earlier update, when no other
        write of the run comes between them; the merged write keeps the earlier place."""
        out: list[_Write] = []
        last: dict[str, _Write] = {}
        for write in batch:
            if write.key is not None and write.key in last:
                earlier = last[write.key]
                earlier.args = (earlier.args[0].merged(write.args[0]),)
                earlier.futures += write.futures
                self.merged += 1
                continue
            if write.key is not None:
                last[write.key] = write
            out.append(write)
        return out

    def _track(self, write: _Write) -> None:
        if self._backlog and not self._drain(wait_s=0.0):
            self._backlog.append(write)
            return
        if not self._execute(write, keep=True):
            self._backlog.append(write)

    def _execute(self, write: _Write, *, keep: bool = False) -> bool:
        """Run one write. ``False`` (nothing resolved) when ``keep`` and the server is unreachable."""
        call = write.replay if write.held and write.replay is not None else write.call
        try:
            write.resolve(call(*write.args, **write.kwargs))
        except Exception as exc:  # noqa: BLE001 - tracking must never take the search down
            # A broken connection is the server going away even while it still accepts one (a
            # server being killed does, for a moment): held, and replayed, like a refused one.
            if keep and self._reachable is not None and (connection_broke(exc) or not self._reachable()):
                write.held = True
                if self.down_since is None:
                    self.down_since = time.monotonic()
                    logger.warning("MLflow tracking server unreachable (%s); holding tracking writes until it answers", exc)
                self._next_probe = time.monotonic() + self.retry_s
                return False
            self._on_error(f"{write.name}: {type(exc).__name__}: {exc}")
            write.resolve(None)
        return True

    def _drain(self, *, wait_s: float) -> bool:
        """Replay the backlog in order if the server answers (asking until ``wait_s`` has passed); ``True`` once empty."""
        deadline = time.monotonic() + wait_s
        while self._backlog:
            now = time.monotonic()
            if now < self._next_probe:
                if now >= deadline:
                    return False
                time.sleep(min(self._next_probe, deadline) - now)
                continue
            if not self._execute(self._backlog[0], keep=True):
                continue  # still down: _execute set the next probe time
            self._backlog.popleft()
            self.replayed += 1
            if not self._backlog and self.down_since is not None:
                logger.warning(
                    "MLflow tracking server back after %.0f s; %d held writes replayed",
                    time.monotonic() - self.down_since,
                    self.replayed,
                )
                self.down_since = None
        return True

    def flush(self, *, wait_s: float = 0.0) -> None:
        """Wait until every write queued so far is done. Held writes get ``wait_s`` more seconds
        for the server to come back; then they are given up (counted in :attr:`untracked`)."""

        def settle() -> None:
            if self._backlog and not self._drain(wait_s=wait_s):
                lost = len(self._backlog)
                self.untracked += lost
                for write in self._backlog:
                    write.resolve(None)
                self._backlog.clear()
                self._on_error(f"the MLflow tracking server did not come back: {lost} tracking writes were not recorded")

        self._put(_Write(settle, (), {}, [Future()], None, CONTROL)).result()

    @property
    def holding(self) -> int:
        """Tracking writes waiting for the server now."""
        return len(self._backlog)

    def close(self) -> None:
        """Finish the queued writes and stop the writer thread."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join()


TRACKING, STORE, CONTROL = "tracking", "store", "control"


@dataclass
class _Write:
    call: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    futures: list[Future[Any]]
    replay: Callable[..., Any] | None
    kind: str
    key: str | None = None  # the run an update writes to (merged with that run's next updates)
    held: bool = False

    @property
    def name(self) -> str:
        return getattr(self.call, "__name__", "tracking")

    def resolve(self, result: Any) -> None:
        for future in self.futures:
            future.set_result(result)
