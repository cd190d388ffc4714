"""The live progress bar a foreground search shows: trials done of total, states, best so far."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class RichProgress:
    """A :class:`~automl.engine.callbacks.ProgressSink` drawn with rich on stderr."""

    def __init__(self, console: Console | None = None, *, label: str = "trials") -> None:
        self.console = console or Console(stderr=True)
        self.label = label
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._states: dict[str, int] = {}

    def start(self, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[waiting]}{task.fields[states]}  best: [bold green]{task.fields[best]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total, states="", best="-", waiting="")

    def waiting(self, what: str | None) -> None:
        """Show what the job waits for (``None``: nothing; the trials run)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, waiting=f"[cyan]{what}…[/cyan]  " if what else "")

    def trial_done(self, state: str, best: float | None) -> None:
        if self._progress is None or self._task is None:
            return
        self._states[state] = self._states.get(state, 0) + 1
        self.waiting(None)
        states = " ".join(f"{name.lower()}={count}" for name, count in sorted(self._states.items()))
        self._progress.update(self._task, advance=1, states=states, best="-" if best is None else f"{best:.4g}")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
