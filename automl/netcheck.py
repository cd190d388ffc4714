"""A quick TCP check, so an unreachable service fails in seconds with a message that says what to do."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from automl.errors import AutomlError


def check_tcp(host: str, port: int, *, what: str, hint: str, timeout: float = 5.0) -> None:
    """Connect to ``host:port`` and close; raise naming ``what`` and ``hint`` if nothing answers.

    Raises:
        AutomlError: the connection was refused or timed out.
    """
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=timeout):
            return
    except OSError as exc:
        raise AutomlError(f"cannot reach {what}: {exc.strerror or exc}. {hint}") from None


def check_url(url: str, *, what: str, hint: str) -> None:
    """:func:`check_tcp` for an ``http(s)://`` URL; other schemes are not network services here."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return
    check_tcp(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), what=what, hint=hint)


def check_tracking_server(uri: str, *, set_by: str = "MLFLOW_TRACKING_URI (or --tracking-uri)") -> None:
    """Refuse an ``http(s)://`` MLflow tracking URI whose server does not answer, in seconds.

    The one check of the tracking server: ``automl run`` and ``automl submit`` make it before a job
    is queued, and the tracker before it writes the job's first run.

    Args:
        uri: the tracking URI (a password in it is never shown).
        set_by: where the URI came from, named in the message as the thing to fix.

    Raises:
        AutomlError: nothing answers at the URI's host and port.
    """
    from automl.settings import redact_url

    check_url(
        uri,
        what=f"the MLflow tracking server at {redact_url(uri)}",
        hint=f"Start it (see mlflow/), or fix {set_by}; unset it to track locally.",
    )
