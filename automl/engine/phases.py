"""Where a search's fixed cost goes: the wall time of each phase of a run, in order.

A search's time outside its trials (starting or joining Ray, opening the stores, setting up
tracking, settling, plots, the summary and the model) is what a user waits for on top of the
trials; the run marks each phase's end, and the breakdown goes to the job's events (``phases``),
to :attr:`~automl.results.SearchResult.phases` and to ``benchmarks/overhead.py``. Marking costs
one clock read: it never changes what a search does.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class PhaseClock:
    """Splits the time since its creation into named phases: :meth:`mark` ends the current one."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._last = clock()
        self._started = self._last
        self.seconds: dict[str, float] = {}
        self.notes: dict[str, str] = {}

    def mark(self, phase: str, note: str | None = None) -> None:
        """End ``phase`` now (a phase marked twice adds up); ``note`` says more in the line."""
        now = self._clock()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + (now - self._last)
        self._last = now
        if note:
            self.notes[phase] = note

    @property
    def total_s(self) -> float:
        """From the clock's start to the last mark."""
        return self._last - self._started

    def line(self) -> str:
        """One line for the job's events, e.g. ``ray 0.0 s, stores 0.1 s, trials 3.0 s (...); 4.6 s in all``."""
        parts = [
            f"{name} {seconds:.1f} s" + (f" ({self.notes[name]})" if name in self.notes else "")
            for name, seconds in self.seconds.items()
        ]
        return f"{', '.join(parts)}; {self.total_s:.1f} s in all"


__all__ = ["PhaseClock"]
