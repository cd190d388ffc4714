"""Webhooks a job calls when it ends: what a hook URL may be, how a call is signed, and how a
receiver checks the signature (:func:`verify_signature`, the one function a receiver needs).

A call is signed Stripe-style: ``X-Automl-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256 with the shared secret (``AUTOML_WEBHOOK_SECRET``) over ``f"{t}."`` and the raw body.
The time is signed with the body, so a receiver that refuses old times refuses replays.

What must stay true: this module is a leaf (the standard library and :mod:`automl.errors` only), so
a receiver can import it without Ray, torch or MLflow, or copy :func:`verify_signature` whole; a
hook URL is ``http://`` or ``https://`` with a host; and what names a hook where others read it (a
job's events, logs) is :func:`shown_url`, which keeps no part of the URL a secret could hide in.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from urllib.parse import urlsplit

from automl.errors import InputError

WEBHOOKS_ENV = "AUTOML_WEBHOOKS"
SECRET_ENV = "AUTOML_WEBHOOK_SECRET"

# What a delivery's ``event`` (and its X-Automl-Event header) may be.
EVENTS = ("job.succeeded", "job.failed", "job.cancelled", "job.stopped_early")
EVENT_HEADER = "X-Automl-Event"
DELIVERY_HEADER = "X-Automl-Delivery"
SIGNATURE_HEADER = "X-Automl-Signature"
# How old a signature's time may be (either way, for clocks a little apart) before it is refused.
DEFAULT_TOLERANCE_S = 300
MAX_URL_CHARS = 2048


def check_webhook_url(url: str) -> str:
    """``url`` if it can be a webhook: ``http://`` or ``https://``, a host, no spaces or control characters.

    Raises:
        ValueError: saying what is wrong and what is expected.
    """
    shown = repr(url) if len(url) <= 100 else f"{url[:80]!r}… ({len(url)} characters)"
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"{shown} is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise ValueError(f"{shown} holds a space or a control character")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks the port is a number in range
    except ValueError as exc:
        raise ValueError(f"{shown} is not a URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{shown} is not a webhook URL: give http://HOST/PATH or https://HOST/PATH")
    return url


def shown_url(url: str) -> str:
    """How a hook is named in a job's events and in logs: its scheme, host and port only.

    A password may sit in the user part, a token in the query, and some services (Slack, Teams)
    put the secret in the path itself; none of them is shown (a ``/…`` says a path was there).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme.lower()}://{host}{port}{rest}"


def server_hooks_from_env() -> tuple[str, ...]:
    """The server-wide hooks: ``AUTOML_WEBHOOKS``, comma-separated URLs, called for every job.

    Raises:
        InputError: one of them is not an http(s) URL (named by its place, not its text).
    """
    urls = [u.strip() for u in os.environ.get(WEBHOOKS_ENV, "").split(",") if u.strip()]
    for index, url in enumerate(urls, start=1):
        try:
            check_webhook_url(url)
        except ValueError:
            raise InputError(
                f"{WEBHOOKS_ENV}: URL {index} of {len(urls)} ({shown_url(url)}) is not a webhook URL; "
                "give comma-separated http://HOST/PATH or https://HOST/PATH URLs"
            ) from None
    return tuple(dict.fromkeys(urls))


def secret_from_env() -> str | None:
    """The signing secret, ``AUTOML_WEBHOOK_SECRET``; ``None`` (calls go unsigned) if unset or empty."""
    return os.environ.get(SECRET_ENV) or None


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}."`` and ``body`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, now: float | None = None) -> str:
    """The ``X-Automl-Signature`` value for ``body`` sent now: ``t=<unix seconds>,v1=<hex>``."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"


def verify_signature(
    secret: str, body: bytes, header: str | None, *, tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None
) -> bool:
    """Whether ``header`` (the ``X-Automl-Signature`` received) signs ``body`` with ``secret``,
    at a time within ``tolerance_s`` seconds of ``now``: the check a receiver makes.

    Pass the body's raw bytes, exactly as received (not JSON parsed and dumped again). Several
    ``v1=`` values are accepted, any one matching. A missing or malformed header is ``False``.

    Args:
        secret: the shared secret (the service's ``AUTOML_WEBHOOK_SECRET``).
        body: the request body, as received.
        header: the ``X-Automl-Signature`` header's value, or ``None`` when it is missing.
        tolerance_s: how far the signed time may be from now (replays older than this are refused).
        now: the current unix time (default: the clock's).
    """
    if not header or not secret:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp)
    # Bytes: compare_digest refuses a str with non-ASCII characters, which a forged header may hold.
    return any(hmac.compare_digest(expected.encode(), c.encode("utf-8", "replace")) for c in candidates)
