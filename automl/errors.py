"""The errors the service raises on purpose: each names what is wrong and what to do next."""

from __future__ import annotations


class AutomlError(Exception):
    """Base of every error the service raises on purpose; the CLI prints it as one line."""


class SpecError(AutomlError):
    """A job spec or search space is invalid. Raised before anything is written."""

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"invalid job spec {where}" + "; ".join(self.problems))


class TrackingError(AutomlError):
    """The MLflow tracking store could not be reached or written."""
