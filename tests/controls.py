"""A :class:`~automl.control.JobControl` for tests: records the events and progress a search
reports, and answers a fixed stop reason (our own protocol, so no mock of a library)."""

from __future__ import annotations

from typing import Any


class RecordingControl:
    """Records ``on_event`` and ``on_progress`` calls; ``stop_reason`` is ``reason`` (default: never stop)."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason
        self.events: list[tuple[str, str]] = []
        self.progress: list[tuple[int, float | None]] = []
        self.tracking: tuple[str | None, str | None] | None = None

    def stop_reason(self) -> str | None:
        return self.reason

    def on_tracking(self, experiment_id: str | None, run_id: str | None) -> None:
        self.tracking = (experiment_id, run_id)

    def on_progress(self, finished: int, best: float | None, trial: Any = None) -> None:
        self.progress.append((finished, best))

    def on_event(self, kind: str, message: str) -> None:
        self.events.append((kind, message))

    def kinds(self) -> list[str]:
        """The kinds of the events recorded, in order."""
        return [kind for kind, _ in self.events]
