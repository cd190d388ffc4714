"""The errors the service raises on purpose: each names what is wrong and what to do next."""

from __future__ import annotations

from collections.abc import Iterator


class AutomlError(Exception):
    """Base of every error the service raises on purpose; the CLI prints it as one line."""


class InputError(AutomlError):
    """What the user gave (a spec, an argument) is invalid; raised before anything is written.

    The CLI exits with code 2 for it, 1 for every other error.
    """


class SpecError(InputError):
    """A job spec or search space is invalid. Raised before anything is written."""

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        # One line each, whatever the input held: the CLI prints the error as one line.
        self.problems = [_one_line(p) for p in ([problems] if isinstance(problems, str) else problems)]
        self.source = None if source is None else _one_line(source)
        where = f"{self.source}: " if self.source else ""
        super().__init__(f"invalid job spec {where}" + "; ".join(self.problems))


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines and other line breaks too) made one space."""
    return " ".join(str(text).split())


class TrackingError(AutomlError):
    """The MLflow tracking store could not be reached or written."""


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or during, and so on, each once: libraries wrap the
    error that matters (a driver's, a transport's) in their own."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


_TRANSIENT_MARKERS = (
    "locked",
    "busy",
    "could not connect",
    "connection refused",
    "server closed",
    "terminating connection",
    "connection reset",
    "the database system is",
)


def is_transient(exc: BaseException | None) -> bool:
    """A database error worth retrying: a lock, or the server restarting or unreachable.

    Follows the exception's causes, as libraries wrap the driver's error (Optuna's
    ``StorageInternalError`` around SQLAlchemy's ``OperationalError``).
    """
    return any(
        getattr(e, "connection_invalidated", False) or any(m in str(e).lower() for m in _TRANSIENT_MARKERS)
        for e in exception_chain(exc)
    )
