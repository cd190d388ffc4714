"""Retrying a database call that failed for a passing reason, with exponential backoff.

The one retry policy of the service, on ``tenacity``: the call is retried while ``retryable(exc)``
holds, the pauses double from ``first_pause_s`` up to ``max_pause_s``, and no pause starts that
would end past ``window_s`` from the first try; then the last error is raised as it was. Each
retry is logged with the error's type and the pause, so a log shows a database that stalled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay, wait_exponential
from tenacity.stop import stop_base

T = TypeVar("T")


def retrying(
    call: Callable[[], T],
    *,
    retryable: Callable[[BaseException], bool],
    window_s: float,
    first_pause_s: float,
    max_pause_s: float,
    what: str,
    logger: logging.Logger,
    level: int = logging.WARNING,
    max_attempts: int | None = None,
) -> T:
    """``call()``, retried while it raises a ``retryable`` error within ``window_s`` seconds.

    Args:
        what: names the call in the log line, e.g. ``"the study's database"``.
        max_attempts: stop after this many tries too (``None``: only the window limits them).
    """

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        logger.log(
            level,
            "%s did not answer (%s: %s); retrying in %.1f s",
            what,
            type(exc).__name__,
            str(exc).strip().splitlines()[0][:200] if exc is not None and str(exc).strip() else "",
            pause,
        )

    stop: stop_base = stop_before_delay(window_s)
    if max_attempts is not None:
        stop = stop | stop_after_attempt(max_attempts)
    for attempt in Retrying(
        retry=retry_if_exception(retryable),
        wait=wait_exponential(multiplier=first_pause_s, max=max_pause_s),
        stop=stop,
        before_sleep=log_retry,
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable: tenacity either returns the call's result or raises")  # pragma: no cover


__all__ = ["retrying"]
