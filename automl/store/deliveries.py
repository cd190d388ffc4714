"""Webhook deliveries of finished jobs, in the job store: queued once per job, sent until answered.

The only module that issues SQL for ``automl_deliveries`` and for the jobs' ``notified`` flag; it
also adds a job's ``webhook`` events, in the same transaction as the outcome they report. What
must stay true: a finished job's deliveries are queued exactly once, whatever the number of
notifiers (one conditional UPDATE moves ``notified`` from false to true, and the rows go in with
it); a delivery is held by one sender at a time (claiming it is one conditional UPDATE that moves
``next_at`` forward as a lease, so a sender that dies lets it fall due again); a delivery's body
never changes after it is queued (every retry sends the same bytes); every delivery ends
delivered or given up (``next_at`` NULL) after a bounded number of attempts, each counted when
it is claimed; an event names a hook by :func:`automl.webhooks.shown_url`, never the whole URL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, Engine, Executable, select, update
from sqlalchemy.orm import Session, sessionmaker

from automl.states import FINAL_JOB_STATES
from automl.store.records import JobView, job_view
from automl.store.schema import Delivery, Job, JobEvent
from automl.webhooks import shown_url

# What a webhook's last error keeps (a receiver's answer may be long; the event shows less).
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Outgoing:
    """A delivery to queue: where, which event, and its body given the delivery's id (known once inserted)."""

    url: str
    event: str
    render: Callable[[int], str]


@dataclass(frozen=True)
class DeliveryView:
    """One delivery as the store saw it (immutable). ``attempts`` counts the one being made, once claimed."""

    id: int
    job_id: str
    url: str
    event: str
    payload: str
    attempts: int
    created_at: datetime
    next_at: datetime | None
    delivered_at: datetime | None
    gave_up_at: datetime | None
    status_code: int | None
    last_error: str | None

    @property
    def done(self) -> bool:
        return self.next_at is None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _changed(session: Session, statement: Executable) -> int:
    result = session.execute(statement)
    assert isinstance(result, CursorResult)  # an UPDATE without RETURNING
    return result.rowcount


class DeliveryStore:
    """Queue, claim and settle webhook deliveries. ``retrying`` runs a unit of work with the job store's retries."""

    def __init__(self, engine: Engine, retrying: Callable[[Callable[[], Any]], Any]) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._retrying = retrying

    # -- queueing -------------------------------------------------------------------------

    def unnotified(self, *, limit: int = 20) -> list[JobView]:
        """Finished jobs whose deliveries are not queued yet, the earliest finished first."""

        def work() -> list[JobView]:
            with self._sessions.begin() as session:
                query = (
                    select(Job)
                    .where(Job.state.in_(FINAL_JOB_STATES), Job.notified.is_(False))
                    .order_by(Job.finished_at, Job.id)
                    .limit(limit)
                )
                return [job_view(job) for job in session.scalars(query)]

        return self._retrying(work)

    def queue(self, job_id: str, outgoing: Sequence[Outgoing]) -> list[DeliveryView] | None:
        """Mark a finished job notified and queue its deliveries (due now), in one transaction.

        Returns:
            The deliveries queued (none when the job has no hook), or ``None`` when the job was
            notified already (another notifier won it) or is not finished.
        """

        def work() -> list[DeliveryView] | None:
            now = _now()
            with self._sessions.begin() as session:
                won = _changed(
                    session,
                    update(Job)
                    .where(Job.id == job_id, Job.notified.is_(False), Job.state.in_(FINAL_JOB_STATES))
                    .values(notified=True),
                )
                if won != 1:
                    return None
                rows = []
                for item in outgoing:
                    row = Delivery(
                        job_id=job_id, url=item.url, event=item.event, payload="", attempts=0, created_at=now, next_at=now
                    )
                    session.add(row)
                    session.flush()  # its id, which the body carries
                    row.payload = item.render(row.id)
                    rows.append(row)
                session.flush()
                return [_view(row) for row in rows]

        return self._retrying(work)

    # -- sending --------------------------------------------------------------------------

    def claim_due(self, *, lease_s: float, limit: int = 8) -> list[DeliveryView]:
        """Take up to ``limit`` deliveries that are due, counting an attempt for each and holding it
        for ``lease_s`` seconds (it falls due again then, if its sender never says how it went).

        Each claim is one conditional UPDATE on the ``next_at`` and ``attempts`` that were read: of
        two notifiers reaching for one delivery, exactly one gets it.
        """

        def work() -> list[DeliveryView]:
            now = _now()
            with self._sessions.begin() as session:
                candidates = session.execute(
                    select(Delivery.id, Delivery.next_at, Delivery.attempts)
                    .where(Delivery.next_at.is_not(None), Delivery.next_at <= now)
                    .order_by(Delivery.next_at, Delivery.id)
                    .limit(limit)
                ).all()
            claimed = []
            for candidate in candidates:
                with self._sessions.begin() as session:
                    won = _changed(
                        session,
                        update(Delivery)
                        .where(
                            Delivery.id == candidate.id,
                            Delivery.next_at == candidate.next_at,
                            Delivery.attempts == candidate.attempts,
                        )
                        .values(next_at=now + timedelta(seconds=lease_s), attempts=Delivery.attempts + 1),
                    )
                    if won == 1:
                        claimed.append(_view(session.get_one(Delivery, candidate.id)))
            return claimed

        return self._retrying(work)

    def delivered(self, delivery: DeliveryView, *, status_code: int) -> bool:
        """Record that the receiver answered 2xx; adds the job's ``webhook`` event.

        Returns:
            ``False`` if it was recorded delivered already (a sender whose lease ran out, and a
            second one, both got through): the event is written once.
        """

        def work() -> bool:
            now = _now()
            with self._sessions.begin() as session:
                won = _changed(
                    session,
                    update(Delivery)
                    .where(Delivery.id == delivery.id, Delivery.delivered_at.is_(None))
                    .values(delivered_at=now, next_at=None, gave_up_at=None, status_code=status_code, last_error=None),
                )
                if won == 1:
                    tries = "1 attempt" if delivery.attempts == 1 else f"{delivery.attempts} attempts"
                    message = f"{delivery.event} delivered to {shown_url(delivery.url)} (HTTP {status_code}, {tries})"
                    session.add(JobEvent(job_id=delivery.job_id, at=now, kind="webhook", message=message))
                return won == 1

        return self._retrying(work)

    def failed(self, delivery: DeliveryView, *, status_code: int | None, error: str, retry_in_s: float | None) -> bool:
        """Record a failed attempt: try again in ``retry_in_s`` seconds, or (``None``) give up, adding
        the job's ``webhook`` event. ``error`` must not hold the URL (see :func:`automl.webhooks.shown_url`).

        Returns:
            ``False`` if the delivery moved on meanwhile (delivered, or claimed again after this
            sender's lease ran out): nothing is recorded.
        """

        def work() -> bool:
            now = _now()
            error_text = " ".join(error.split())[:MAX_ERROR_CHARS]
            given_up = retry_in_s is None
            with self._sessions.begin() as session:
                won = _changed(
                    session,
                    update(Delivery)
                    .where(
                        Delivery.id == delivery.id,
                        Delivery.attempts == delivery.attempts,
                        Delivery.delivered_at.is_(None),
                        Delivery.gave_up_at.is_(None),
                    )
                    .values(
                        next_at=None if retry_in_s is None else now + timedelta(seconds=retry_in_s),
                        gave_up_at=now if given_up else None,
                        status_code=status_code,
                        last_error=error_text,
                    ),
                )
                if won == 1 and given_up:
                    tries = "1 attempt" if delivery.attempts == 1 else f"{delivery.attempts} attempts"
                    message = f"{delivery.event} to {shown_url(delivery.url)}: gave up after {tries}; last: {error_text}"
                    session.add(JobEvent(job_id=delivery.job_id, at=now, kind="webhook", message=message))
                return won == 1

        return self._retrying(work)

    # -- reading --------------------------------------------------------------------------

    def of_job(self, job_id: str) -> list[DeliveryView]:
        """A job's deliveries, in the order they were queued."""

        def work() -> list[DeliveryView]:
            with self._sessions.begin() as session:
                rows = session.scalars(select(Delivery).where(Delivery.job_id == job_id).order_by(Delivery.id))
                return [_view(row) for row in rows]

        return self._retrying(work)


def _view(row: Delivery) -> DeliveryView:
    return DeliveryView(
        id=row.id,
        job_id=row.job_id,
        url=row.url,
        event=row.event,
        payload=row.payload,
        attempts=row.attempts,
        created_at=row.created_at,
        next_at=row.next_at,
        delivered_at=row.delivered_at,
        gave_up_at=row.gave_up_at,
        status_code=row.status_code,
        last_error=row.last_error,
    )
