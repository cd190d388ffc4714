"""Word when a job ends: the :class:`Notifier` queues a finished job's webhooks and sends them, signed,
retried with backoff, from a thread of its own.

Each runner starts one (so jobs notify without a server), and so does ``automl server``; any number
may share a job store. What must stay true: nothing here runs in a job's thread or holds up a
runner (sends happen on the notifier's threads, and :meth:`Notifier.stop` waits about a second at
most, leaving an unfinished delivery to fall due again for the next notifier); a finished job's
deliveries are queued once (see :mod:`automl.store.deliveries`); a receiver answering anything
but 2xx, or nothing, is tried again with backoff, then given up with a job event; a hook's full
URL never reaches an event or a log line (:func:`automl.webhooks.shown_url`).
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import yaml

from automl.states import JobState
from automl.store.deliveries import DeliveryView, Outgoing
from automl.store.jobs import utcnow
from automl.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    check_webhook_url,
    secret_from_env,
    server_hooks_from_env,
    shown_url,
    signature_header,
)

if TYPE_CHECKING:
    import httpx

    from automl.store import JobStore, JobView

logger = logging.getLogger(__name__)

TOP_TRIALS = 5  # how many of the best trials a body lists
# Backoff: base * 2**(attempt - 1) seconds after each failed attempt, at most MAX_BACKOFF_S, give up
# after MAX_ATTEMPTS: with the defaults the tries span about 13 minutes (2, 4, ... 256, 300 s apart).
BACKOFF_BASE_S = 2.0
MAX_BACKOFF_S = 300.0
MAX_ATTEMPTS = 10
BATCH = 8  # deliveries sent at once per look
STOP_GRACE_S = 1.0


def backoff_s(attempts: int, *, base_s: float = BACKOFF_BASE_S, cap_s: float = MAX_BACKOFF_S) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (with 10% jitter, so a receiver that
    comes back is not hit by every waiting delivery at once)."""
    return min(cap_s, base_s * 2.0 ** max(0, attempts - 1)) * random.uniform(0.9, 1.1)


def job_event(job: JobView, stopped_early: str | None) -> str:
    """The webhook event of a finished job: a succeeded job that stopped before its budget is ``job.stopped_early``."""
    if job.state == JobState.SUCCEEDED:
        return "job.stopped_early" if stopped_early is not None else "job.succeeded"
    return f"job.{job.state}"


def stopped_early_reason(kinds_and_messages: Iterable[tuple[str, str]]) -> str | None:
    """Why the job's last attempt stopped early (its ``stopped_early`` event), or ``None``.

    An earlier attempt's early stop does not count: the job was released after it and resumed.
    """
    reason = None
    for kind, message in kinds_and_messages:
        if kind in ("claimed", "reclaimed"):
            reason = None
        elif kind == "stopped_early":
            reason = message.removeprefix("stopped early: ")
    return reason


def job_hooks(job: JobView) -> tuple[str, ...]:
    """The job's own hooks (its spec's ``notify.webhooks``), as its stored spec holds them."""
    try:
        raw = yaml.safe_load(job.spec_yaml) or {}
        hooks = (raw.get("notify") or {}).get("webhooks") or []
    except (yaml.YAMLError, AttributeError):
        logger.warning("job %s: its stored spec cannot be read for webhooks; only the server's hooks are called", job.id)
        return ()
    checked = []
    for url in hooks:
        try:
            checked.append(check_webhook_url(str(url)))
        except ValueError:  # it passed at submit; a spec edited in the database since
            logger.warning("job %s: skipping webhook %s, not an http(s) URL", job.id, shown_url(str(url)))
    return tuple(checked)


def job_payload(job: JobView, event: str, delivery_id: int, *, stopped_early: str | None, queued_at: datetime) -> str:
    """The JSON body of one delivery: the event and the job's result (docs/service.md, Webhooks)."""
    metrics, modes = _metrics(job)
    snapshot = job.snapshot
    top = list(snapshot.top[:TOP_TRIALS]) if snapshot is not None else []
    document = {
        "event": event,
        "delivery": delivery_id,
        "queued_at": _time(queued_at),
        "job": {
            "id": job.id,
            "name": job.name,
            "owner": job.owner,
            "state": job.state,
            "metric": metrics[0] if metrics else None,
            "mode": modes[0] if modes else None,
            "metrics": metrics,
            "modes": modes,
            "trials_total": job.trials_total,
            "trials_finished": job.trials_finished,
            "trial_counts": dict(snapshot.counts) if snapshot is not None else {},
            "best_value": job.best_value,
            "best_params": dict(top[0].params) if top else None,
            "top_trials": [
                {"number": t.number, "value": t.value, "values": list(t.values or (t.value,)), "params": dict(t.params)}
                for t in top
            ],
            "error": job.error,
            "stopped_early": stopped_early,
            "created_at": _time(job.created_at),
            "started_at": _time(job.started_at),
            "finished_at": _time(job.finished_at),
            "attempts": job.attempts,
            "mlflow": {"experiment_id": job.experiment_id, "run_id": job.mlflow_run_id},
        },
    }
    return json.dumps(_finite(document), separators=(",", ":"), default=str)


def _metrics(job: JobView) -> tuple[list[str], list[str]]:
    """The job's metrics and modes: its checked plan's (the trainer's defaults resolved), else its spec's."""
    try:
        if job.plan_json:
            plan = json.loads(job.plan_json)
            if plan.get("metrics"):
                return [str(m) for m in plan["metrics"]], [str(m) for m in plan.get("modes") or ()]
        raw = yaml.safe_load(job.spec_yaml) or {}
    except (ValueError, yaml.YAMLError, AttributeError):
        return [], []
    metric, mode = raw.get("metric"), raw.get("mode")
    metrics = [metric] if isinstance(metric, str) else list(metric or ())
    modes = [mode] if isinstance(mode, str) else list(mode or ())
    if not modes and job.snapshot is not None:
        modes = list(job.snapshot.directions)
    return [str(m) for m in metrics], [str(m) for m in modes]


def _time(at: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with a ``Z``."""
    return None if at is None else at.isoformat(timespec="seconds") + "Z"


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity made ``null``: strict JSON parsers refuse them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class _HideHookUrls(logging.Filter):
    """Names our hooks by :func:`shown_url` in httpx's own log lines (``HTTP Request: POST <url>``
    at INFO), which print the whole URL, password and all."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def hide(self, url: str) -> None:
        """Shorten ``url`` from now on, as given and as httpx writes it (a host lower-cased, a ``/`` added, ...)."""
        import httpx

        self.urls.update((url, str(httpx.URL(url))))

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self.urls:
            record.args = tuple(shown_url(str(a)) if str(a) in self.urls else a for a in record.args)
        return True


_hide_hook_urls = _HideHookUrls()


class Notifier:
    """Queues the deliveries of jobs that ended and sends those due, every ``poll_s`` seconds, on a thread.

    Args:
        store: the job store (its :attr:`~automl.store.JobStore.deliveries`).
        server_hooks: URLs called for every job (``AUTOML_WEBHOOKS``), besides each job's own.
        secret: signs every call (``AUTOML_WEBHOOK_SECRET``); ``None``: calls go unsigned.
        poll_s: seconds between looks (:meth:`wake` looks at once).
        timeout_s: how long one call may take to connect, and then to send or to be answered.
        max_attempts: attempts before a delivery is given up.
        backoff_base_s: the wait after the first failed attempt; it doubles after each, up to ``max_backoff_s``.
        max_backoff_s: the longest wait between attempts.
        lease_s: how long a claimed delivery is held before another notifier may try it (its sender
            died); default well past the longest a call can take.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        server_hooks: Iterable[str] = (),
        secret: str | None = None,
        poll_s: float = 1.0,
        timeout_s: float = 10.0,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        lease_s: float | None = None,
    ) -> None:
        self.store = store
        self.server_hooks = tuple(dict.fromkeys(check_webhook_url(url) for url in server_hooks))
        self.secret = secret or None
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.max_backoff_s = max_backoff_s
        self.lease_s = lease_s if lease_s is not None else max(60.0, 6 * timeout_s)
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._said_unsigned = False

    # -- the thread -----------------------------------------------------------------------

    def start(self) -> Notifier:
        """Start looking, on a daemon thread; returns itself."""
        if self._thread is not None:
            raise RuntimeError("this notifier was started already; make a new one")
        self._thread = threading.Thread(target=self._loop, name="webhook-notifier", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look now (a job just ended), not at the next poll."""
        self._wake.set()

    def stop(self, *, grace_s: float = STOP_GRACE_S) -> None:
        """Take a last look (a job that just ended), waiting at most ``grace_s`` seconds for it.

        A call still in flight then is left to its daemon thread; if the process ends first, the
        delivery falls due again when its lease runs out, for the next notifier on this store.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=grace_s)
            if self._thread.is_alive():
                logger.info("webhook notifier stopping with a call still in flight; another notifier will retry it")
                return
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._look()
            self._wake.wait(self.poll_s)
            self._wake.clear()
        self._look()

    def _look(self) -> None:
        try:
            self.poll_once()
        except Exception as exc:  # noqa: BLE001 - a store that is down now may be up at the next look
            logger.warning("webhook notifier: %s; trying again in %.0f s", exc, self.poll_s)

    # -- one look -------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Queue the deliveries of jobs that ended, then send the due ones (at most a batch, at once);
        returns how many were sent. Waits for the calls at most about ``timeout_s`` each way."""
        self.queue_finished()
        due = self.store.deliveries.claim_due(lease_s=self.lease_s, limit=BATCH)
        if not due:
            return 0
        threads = [threading.Thread(target=self._send, args=(d,), name=f"webhook-{d.id}", daemon=True) for d in due]
        for thread in threads:
            thread.start()
        # httpx's timeout is per phase (connect, write, each read): a receiver that trickles its
        # answer can outlast it, and is left to its thread rather than hold up the next look.
        for thread in threads:
            thread.join(timeout=3 * self.timeout_s + 1)
        if any(thread.is_alive() for thread in threads):
            logger.warning("webhook notifier: a receiver is still answering after %.0f s; not waiting for it", self.timeout_s)
        return len(due)

    def queue_finished(self, *, limit: int = 20) -> int:
        """Queue the deliveries of up to ``limit`` jobs that ended and were not notified; returns how many deliveries."""
        queued = 0
        for job in self.store.deliveries.unnotified(limit=limit):
            events = self.store.events(job.id, limit=50)
            early = stopped_early_reason((e.kind, e.message) for e in events) if job.state == JobState.SUCCEEDED else None
            event = job_event(job, early)
            now = utcnow()
            outgoing = [
                Outgoing(url, event, partial(job_payload, job, event, stopped_early=early, queued_at=now))
                for url in dict.fromkeys([*job_hooks(job), *self.server_hooks])
            ]
            done = self.store.deliveries.queue(job.id, outgoing)
            if done:
                logger.info("job %s: %s queued for %d webhook(s)", job.id, event, len(done))
                queued += len(done)
        return queued

    def _send(self, delivery: DeliveryView) -> None:
        """One attempt: POST the body, signed; record it delivered, to retry, or given up."""
        body = delivery.payload.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "automl-webhooks/1",
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: str(delivery.id),
        }
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = signature_header(self.secret, body)
        elif not self._said_unsigned:
            self._said_unsigned = True
            logger.warning("webhook calls go unsigned: set AUTOML_WEBHOOK_SECRET so receivers can trust them")
        status: int | None = None
        try:
            client = self._http()
            _hide_hook_urls.hide(delivery.url)
            response = client.post(delivery.url, content=body, headers=headers)
            status = response.status_code
            error = f"HTTP {status} {response.reason_phrase}".strip()
        except Exception as exc:  # noqa: BLE001 - whatever the call raised, the delivery is tried again
            error = f"{type(exc).__name__}: {exc}".replace(delivery.url, shown_url(delivery.url))
        try:
            if status is not None and 200 <= status < 300:
                self.store.deliveries.delivered(delivery, status_code=status)
                logger.info("webhook %d (%s) delivered to %s", delivery.id, delivery.event, shown_url(delivery.url))
                return
            give_up = delivery.attempts >= self.max_attempts
            wait = None if give_up else backoff_s(delivery.attempts, base_s=self.backoff_base_s, cap_s=self.max_backoff_s)
            self.store.deliveries.failed(delivery, status_code=status, error=error, retry_in_s=wait)
            level = logging.WARNING if give_up else logging.INFO
            what = "gave up" if give_up else f"will retry in {wait:.1f} s"
            logger.log(level, "webhook %d (%s) to %s: %s; %s", delivery.id, delivery.event, shown_url(delivery.url), error, what)
        except Exception as exc:  # noqa: BLE001 - unrecorded, the delivery falls due again when its lease ends
            logger.warning("webhook %d: could not record its attempt: %s", delivery.id, exc)

    def _http(self) -> httpx.Client:
        import httpx

        with self._client_lock:
            if self._client is None:
                logging.getLogger("httpx").addFilter(_hide_hook_urls)  # once: a filter is added only once
                self._client = httpx.Client(timeout=httpx.Timeout(self.timeout_s), follow_redirects=False)
            return self._client


def notifier_from_env(store: JobStore, **options: Any) -> Notifier:
    """A notifier with the server-wide hooks and secret of the environment (``AUTOML_WEBHOOKS``,
    ``AUTOML_WEBHOOK_SECRET``); ``options`` as :class:`Notifier` takes them. Not started.

    Raises:
        InputError: ``AUTOML_WEBHOOKS`` holds something that is not an http(s) URL.
    """
    notifier = Notifier(store, server_hooks=server_hooks_from_env(), secret=secret_from_env(), **options)
    if notifier.server_hooks and notifier.secret is None:
        logger.warning("AUTOML_WEBHOOKS is set without AUTOML_WEBHOOK_SECRET: webhook calls go unsigned; set a secret")
    return notifier
