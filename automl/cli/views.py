"""What the CLI shows: tables of trials and jobs, a job's status, and their JSON forms."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, JustifyMethod
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from automl.engine.auto_strategy import strategy_line
from automl.settings import redact_url
from automl.states import JobState, TrialState

if TYPE_CHECKING:
    from automl.results import SearchResult, TrialSummary
    from automl.store import EventView, JobView
    from automl.store.snapshot import JobSnapshot

STATE_STYLE: dict[str, str] = {
    JobState.QUEUED: "cyan",
    JobState.RUNNING: "yellow",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.CANCELLED: "magenta",
    TrialState.COMPLETE: "green",
    TrialState.PRUNED: "yellow",
    TrialState.FAIL: "red",
    TrialState.RUNNING: "cyan",
}


def fitted_headers(headers: list[str], rows: list[list[str]], width: int | None) -> list[str]:
    """The column headers as they are, or broken after their underscores (``learning_`` over
    ``rate``) when the table would not fit ``width`` columns otherwise: the values stay whole."""
    if width is None or not headers:
        return headers
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    if sum(w + 2 for w in widths) <= width:  # each column: its padding (collapsed to one space between columns)
        return headers
    return [h.replace("_", "_\n") if len(h) > 4 else h for h in headers]


def _value_table(title: str, headers: list[str], rows: list[list[str]], *, first_styled: int, width: int | None) -> Table:
    """A table of figures: no value is ever cut; long headers break at underscores to make room."""
    # One space between columns, none at the edges: 2 more columns of figures fit in 80.
    table = Table(
        title=title, header_style="bold", title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False
    )
    for index, header in enumerate(fitted_headers(headers, rows, width)):
        style = "green" if 1 <= index <= first_styled else None
        table.add_column(
            header, justify="right", no_wrap=True, style=style, min_width=max(len(r[index]) for r in rows) if rows else None
        )
    for row in rows:
        table.add_row(*row)
    return table


def trials_table(trials: list[TrialSummary], *, metric: str, title: str, width: int | None = None) -> Table:
    """The given (completed) trials, one row each, one column per hyperparameter."""
    param_names = sorted({name for t in trials for name in t.params})
    rows = [
        [str(t.number), "-" if t.value is None else f"{t.value:.4g}", *[fmt(t.params.get(name)) for name in param_names]]
        for t in trials
    ]
    return _value_table(title, ["trial", metric, *param_names], rows, first_styled=1, width=width)


def pareto_table(front: list[dict[str, Any]], metrics: list[str], width: int | None = None) -> Table:
    """The Pareto front of a multi-objective job: one row per trial, one column per metric."""
    params = sorted({k for row in front for k in row["params"]})
    rows = [
        [str(row["trial"]), *[f"{row['values'][m]:.4g}" for m in metrics], *[fmt(row["params"].get(p)) for p in params]]
        for row in sorted(front, key=lambda r: r["values"][metrics[0]])
    ]
    return _value_table(
        f"Pareto front ({len(front)} trials)", ["trial", *metrics, *params], rows, first_styled=len(metrics), width=width
    )


def print_result(result: SearchResult, *, top: int = 5, console: Console | None = None) -> None:
    """The end-of-job report: the best trials as a table, and where to see everything."""
    console = console or Console()
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.state_counts.items()))
    console.print(
        trials_table(
            result.top(top), metric=result.metric, title=f"Top trials of {result.job_name} ({counts})", width=console.width
        )
    )
    for trial in [t for t in result.trials if t.state == TrialState.FAIL][:5]:
        console.print(f"[red]trial {trial.number} failed:[/red] {escape(trial.fail_reason or '')}", highlight=False)
    if result.pareto_front:
        console.print(pareto_table(front_rows(result.pareto_front, list(result.metrics)), list(result.metrics), console.width))
    if result.best_value is not None:
        console.print(f"Best: trial {result.best_trial_number}, {result.metric} = {result.best_value:.6g}")
    if result.model_uri:
        console.print(f"Model: {result.model_uri}")
    if result.parent_run_id:
        console.print(
            f"MLflow: run {result.parent_run_id} in experiment {result.experiment_id}; see it with [bold]automl ui[/bold] at"
        )
        console.print(f"  http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs/{result.parent_run_id}", soft_wrap=True)
    console.print(f"Optuna: study {result.study_name!r} in {result.storage_url}")
    if result.tracking_errors:
        console.print(
            f"[yellow]warning:[/yellow] {len(result.tracking_errors)} MLflow writes failed; first: {result.tracking_errors[0]}"
        )


def result_json(result: SearchResult) -> dict[str, Any]:
    """A search result as plain JSON for scripts."""
    return {
        "job_name": result.job_name,
        "study_name": result.study_name,
        "storage_url": result.storage_url,
        "metric": result.metric,
        "mode": result.mode,
        "best_value": result.best_value,
        "best_params": result.best_params,
        "best_trial": result.best_trial_number,
        "model_uri": result.model_uri,
        "experiment_id": result.experiment_id,
        "parent_run_id": result.parent_run_id,
        "tracking_uri": redact_url(result.tracking_uri),  # printed: never the password
        "states": result.state_counts,
        "metrics": list(result.metrics),
        "sampler": result.sampler,
        "scheduler": result.scheduler,
        "strategy_reason": result.strategy_reason,
        "pareto_front": [t.__dict__ for t in result.pareto_front],
        "trials": [t.__dict__ for t in result.trials],
    }


def jobs_table(jobs: list[JobView], width: int | None = None) -> Table:
    """Jobs, newest first: id, name, state, progress, best, age, owner (when they are several users'), runner.

    Narrower than the table needs (80 columns, or piped), the runner column goes and the
    submission time loses its year and seconds; ids, names, states and figures are never cut.
    """
    owners = len({job.owner for job in jobs}) > 1  # an admin's view of several users' jobs
    full = width is None or width >= 100 + (10 if owners else 0)
    table = Table(header_style="bold", box=box.SIMPLE_HEAD)
    columns: list[tuple[str, JustifyMethod]] = [
        ("id", "left"),
        ("name", "left"),
        ("state", "left"),
        ("trials", "right"),
        ("best", "right"),
        ("submitted", "left"),
    ]
    if owners:
        columns.append(("owner", "left"))
    if full:
        columns.append(("runner", "left"))
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name != "runner", min_width=12 if name == "id" else None)
    for job in jobs:
        cells = [
            job.id,
            job.name,
            _styled(job.state) + (" (cancelling)" if job.cancel_requested and job.state == JobState.RUNNING else ""),
            f"{job.trials_finished}/{job.trials_total}",
            "-" if job.best_value is None else f"{job.best_value:.4g}",
            when(job.created_at) if full else when(job.created_at)[5:16],
        ]
        if owners:
            cells.append(job.owner or "-")
        if full:
            cells.append(job.runner_id or "")
        table.add_row(*cells)
    return table


def job_json(job: JobView) -> dict[str, Any]:
    """A job row as JSON (without its spec text and snapshot; ``trial_states`` counts its trials)."""
    data = {name: getattr(job, name) for name in job.__dataclass_fields__ if name not in ("spec_yaml", "snapshot")}
    data["trial_states"] = job.snapshot.counts if job.snapshot is not None else None
    return {k: v.isoformat() + "Z" if isinstance(v, datetime) else v for k, v in data.items()}


def front_rows(front: tuple[TrialSummary, ...] | list[TrialSummary], metrics: list[str]) -> list[dict[str, Any]]:
    """Pareto-front trials as the rows :func:`pareto_table` and the JSON outputs take."""
    return [{"trial": t.number, "values": dict(zip(metrics, t.values or (), strict=False)), "params": t.params} for t in front]


def status_json(job: JobView, events: list[EventView], snapshot: JobSnapshot, metrics: list[str], top: int = 5) -> dict[str, Any]:
    """``automl status --json``: the job row, its strategy, trial counts, top trials, Pareto front and events."""
    return {
        "job": job_json(job),
        "strategy": strategy_line(job.plan_json),
        "states": snapshot.counts,
        "events": [e.__dict__ for e in events],
        "top_trials": [t.__dict__ for t in snapshot.top[:top]],
        "pareto_front": front_rows(snapshot.pareto, metrics),
    }


def status_view(
    job: JobView, events: list[EventView], snapshot: JobSnapshot, metrics: list[str], top: int = 5, width: int | None = None
) -> Group:
    """A job's status: state, progress by trial state, best so far, top trials, Pareto front, recent events."""
    metric = metrics[0]
    best = "-" if job.best_value is None else f"{job.best_value:.6g}"
    cancelling = "  [magenta]cancel requested[/magenta]" if job.cancel_requested and not job.is_final else ""
    states = ", ".join(f"{n} {state.lower()}" for state, n in sorted(snapshot.counts.items()))
    parts: list[Any] = [
        f"[bold]{job.name}[/bold] ({job.id}): {_styled(job.state)}{cancelling}",
        f"  trials: {job.trials_finished}/{job.trials_total} finished"
        + (f" ({states})" if states else "")
        + f", best {metric}: {best}",
    ]
    if job.runner_id and job.state == JobState.RUNNING:
        parts.append(f"  runner: {job.runner_id} (lease until {when(job.lease_expires_at)}, attempt {job.attempts})")
    if job.error:
        parts.append(Text.assemble("  ", ("error:", "red"), f" {job.error}"))
    strategy = strategy_line(job.plan_json)
    if strategy is not None:  # what the job runs; when auto chose it, why
        parts.append(Text(f"  strategy: {strategy}"))
    parts.append(f"  Optuna study: {job.study_name}")
    parts.append(f"  MLflow run: {job.mlflow_run_id or '-'}")
    if job.code_sha256 or job.data_sha256:
        code = f"code {job.code_sha256[:12]}" if job.code_sha256 else "no code package"
        data = f"data {job.data_source} ({job.data_sha256[:12]})" if job.data_sha256 else "no data file"
        parts.append(f"  {code}   {data}")
    if snapshot.top:
        parts.append(trials_table(list(snapshot.top[:top]), metric=metric, title="Top trials", width=width))
    if snapshot.pareto and len(metrics) > 1:
        parts.append(pareto_table(front_rows(snapshot.pareto, metrics), metrics, width))
    if events:
        table = Table("when", "event", "", header_style="bold", box=box.SIMPLE_HEAD, title="Recent events", title_justify="left")
        for event in events:
            table.add_row(when(event.at), event.kind, Text(event.message))
        parts.append(table)
    return Group(*parts)


def when(moment: datetime | None) -> str:
    """A stored UTC time, as local ``YYYY-mm-dd HH:MM:SS``."""
    if moment is None:
        return "-"

    return moment.replace(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt(value: Any) -> str:
    """A hyperparameter value, short."""
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.3g}"
    return "-" if value is None else str(value)


def _styled(state: str) -> str:
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state
