"""The ``automl`` command line: a thin layer over the service and the Python API.

Exit codes: 0 success; 1 the job failed, was cancelled or no trial completed, or a service
could not be reached; 2 the input was invalid (nothing was written). Errors print one line;
``--debug`` shows the traceback. Heavy libraries load only inside the commands that need
them, so ``automl --help`` is instant.

This module holds the commands and their options (``python -m automl.cli`` runs them); how a command ends (exit codes, one line per
error) is :mod:`automl.cli.exits`, and what a job command prints while a job runs is
:mod:`automl.cli.output`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from automl.cli.exits import (
    EXIT_FAILED,
    err,
    exit_for,
    fail,
    guard,
    invalid,
    job_id_or_exit,
    json_mode,
    out,
    service_or_exit,
    settings_or_exit,
    state,
    store_or_exit,
    tables,
    width,
)
from automl.cli.output import follow, metrics_of, progress_factory, stdout_to_stderr
from automl.cli.views import job_json, jobs_table, pareto_table, print_result, result_json, status_json, status_view
from automl.states import JobState

if TYPE_CHECKING:
    from automl.store import JobView

__all__ = ["app", "main"]

app = typer.Typer(
    name="automl",
    help="Hyperparameter search for PyTorch models: Optuna searches, Ray Tune runs the trials, MLflow records them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

DbUrl = Annotated[
    str | None,
    typer.Option("--db-url", envvar="AUTOML_DB_URL", help="Job store URL (default: SQLite in $AUTOML_HOME).", show_default=False),
]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster address (default: a local Ray).", show_default=False),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking URI (default: SQLite in $AUTOML_HOME).",
        show_default=False,
    ),
]
StorageUrl = Annotated[
    str | None,
    typer.Option(
        "--storage-url",
        envvar="AUTOML_STORAGE_URL",
        help="Optuna storage URL (default: SQLite in $AUTOML_HOME).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables (an error too).")]
WideFlag = Annotated[
    bool, typer.Option("--wide", help="Full-width tables, every column, whatever the terminal's width (or a pipe's 80).")
]
JobId = Annotated[str, typer.Argument(help="The job id (a unique prefix of 4 or more characters is enough).", show_default=False)]


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        def of(name: str) -> str:
            try:
                return version(name)
            except PackageNotFoundError:
                return "-"

        libraries = ", ".join(f"{name} {of(name)}" for name in ("optuna", "ray", "mlflow", "torch"))
        out.print(f"automl {of('automl-service')} ({libraries})", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version (and Optuna's, Ray's, MLflow's, PyTorch's) and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Hyperparameter search for PyTorch models.

    State lives in $AUTOML_HOME (default ~/.automl). Point at real services with
    AUTOML_DB_URL (job store), AUTOML_STORAGE_URL (Optuna), MLFLOW_TRACKING_URI and RAY_ADDRESS.
    """
    state.update(debug=debug, json=False, wide=False)


@app.command()
def run(
    job_file: Annotated[Path, typer.Argument(help="The job spec (YAML).", show_default=False)],
    json_output: JsonFlag = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the live progress bar.")] = True,
    top: Annotated[int, typer.Option(help="How many of the best trials to list.")] = 5,
    db_url: DbUrl = None,
    ray_address: RayAddress = None,
    tracking_uri: TrackingUri = None,
    storage_url: StorageUrl = None,
) -> None:
    """Submit a job and run it here, in the foreground, with a live progress bar.

    Ctrl-C cancels the job. Example: [bold]automl run examples/iris.yaml[/bold]. With
    AUTOML_SERVER set, the job goes to the server and this follows it as [bold]submit --wait[/bold] does.
    """
    json_mode(json_output)
    from automl.client import server_from_env
    from automl.engine.cluster import check_resources, ensure_ray
    from automl.service import check_job_file, check_tracking, enqueue
    from automl.service.runner import Runner

    checked = guard(lambda: check_job_file(job_file))
    remote = guard(server_from_env)
    if remote is not None:
        guard(lambda: check_tracking(checked.spec))
        _run_through(remote, checked, json_output=json_output, progress=progress)
        return
    settings = settings_or_exit(db_url, ray_address, tracking_uri, storage_url)
    # Before anything is queued: the tracking server first (a TCP check, seconds), then Ray.
    guard(lambda: check_tracking(checked.spec, settings))

    def check_cluster() -> None:
        ensure_ray(settings.ray_address)
        check_resources(checked.spec)

    if json_output or not progress:
        guard(check_cluster)
    else:
        where = f"connecting to the Ray cluster at {settings.ray_address}" if settings.ray_address else "starting Ray"
        with err.status(f"{where}…"):
            guard(check_cluster)
    store = store_or_exit(settings)
    job = guard(lambda: enqueue(store, checked))
    if not json_output:
        err.print(f"[bold]{job.name}[/bold] ({job.id}): {job.trials_total} trials")
    factory = progress_factory() if progress and not json_output else None
    runner = Runner(store, settings, concurrency=1, progress_factory=factory, poll_s=0.2)

    with stdout_to_stderr(json_output) as real_stdout:
        guard(lambda: runner.run(job_id=job.id, interrupt_cancels=True))
        final = store.get(job.id)
        result = runner.results.get(job.id)
        if real_stdout is not None:
            document = {"job": job_json(final), "result": result_json(result) if result else None}
            real_stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    if not json_output and result is not None:
        print_result(result, top=top, console=out)
    exit_for(final)


def _run_through(service: Any, checked: Any, *, json_output: bool, progress: bool) -> None:
    """``automl run`` with a server: queue the job there, follow it, print its best trial."""
    job = guard(lambda: service.submit(checked))
    if not json_output:
        err.print(f"[bold]{job.name}[/bold] ({job.id}): {job.trials_total} trials, queued on {service.where}")
    final = follow(service, job, quiet=json_output or not progress)
    found = guard(lambda: service.best(final))
    if json_output:
        out.print_json(json.dumps({"job": job_json(final), "best": found}, default=str))
    else:
        _print_best(final, found)
    exit_for(final)


@app.command()
def submit(
    job_file: Annotated[Path, typer.Argument(help="The job spec (YAML).", show_default=False)],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job with a progress bar until it ends.")] = False,
    json_output: JsonFlag = False,
    db_url: DbUrl = None,
) -> None:
    """Validate a job spec and put it in the queue; a runner ([bold]automl worker[/bold]) runs it.

    With AUTOML_SERVER and AUTOML_TOKEN set, the job (and its code package and data file) goes
    to [bold]automl server[/bold] instead of the job store.
    """
    json_mode(json_output)
    from automl.service import check_job_file, check_tracking

    checked = guard(lambda: check_job_file(job_file))
    # The spec's own tracking server only: runners track where their own settings say otherwise.
    guard(lambda: check_tracking(checked.spec))
    store = service_or_exit(db_url)
    job = guard(lambda: store.submit(checked))
    if json_output and not wait:
        out.print_json(json.dumps(job_json(job)))
        return
    if not json_output:
        out.print(f"{job.id}")
        err.print(
            f"queued [bold]{job.name}[/bold] as job {job.id} ({job.trials_total} trials); follow it with: automl status {job.id} --watch"
        )
    if wait:
        final = follow(store, job, quiet=json_output)
        if json_output:
            out.print_json(json.dumps(job_json(final)))
        exit_for(final)


@app.command()
def rerun(
    job_id: JobId,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the new job with a progress bar until it ends.")] = False,
    json_output: JsonFlag = False,
    db_url: DbUrl = None,
) -> None:
    """Run a job again as a new job: the same spec, code package and data file, by their hashes."""
    json_mode(json_output)
    job_id = job_id_or_exit(job_id)
    store = service_or_exit(db_url)
    earlier_id = guard(lambda: store.get(job_id)).id
    job, notes = guard(lambda: store.rerun(earlier_id))
    if json_output and not wait:
        out.print_json(json.dumps({**job_json(job), "rerun_of": earlier_id, "differences": notes}))
        return
    if not json_output:
        out.print(f"{job.id}")
        code = f"code {job.code_sha256[:12]}" if job.code_sha256 else "no code package"
        data = f"data {job.data_sha256[:12]}" if job.data_sha256 else "no data file"
        err.print(f"queued [bold]{job.name}[/bold] again as job {job.id}: the same spec, {code}, {data}")
        for note in notes:
            err.print(f"  {note}")
    if wait:
        final = follow(store, job, quiet=json_output)
        if json_output:
            out.print_json(json.dumps(job_json(final)))
        exit_for(final)


@app.command("list")
def list_jobs(
    state: Annotated[list[str] | None, typer.Option("--state", "-s", help="Only jobs in this state (repeatable).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs, newest first.")] = 50,
    json_output: JsonFlag = False,
    wide: WideFlag = False,
    db_url: DbUrl = None,
) -> None:
    """List jobs, newest first: state, trials done, best value."""
    json_mode(json_output, wide)
    for name in state or []:
        if name not in list(JobState):
            fail(invalid(f"--state: unknown state {name!r} (one of {', '.join(JobState)})"))
    store = service_or_exit(db_url)
    jobs = guard(lambda: store.list(states=tuple(state) if state else None, limit=limit))
    if json_output:
        out.print_json(json.dumps([job_json(j) for j in jobs]))
    elif not jobs:
        err.print("no jobs" + (f" in state {', '.join(state)}" if state else "") + "; submit one with: automl submit JOB.yaml")
    else:
        tables().print(jobs_table(jobs, width()))


@app.command()
def status(
    job_id: JobId,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until the job ends.")] = False,
    json_output: JsonFlag = False,
    wide: WideFlag = False,
    db_url: DbUrl = None,
    storage_url: StorageUrl = None,
) -> None:
    """A job's state, progress, best so far, top trials and recent events.

    It reads the job's row (the runner keeps counts, top trials and the Pareto front there), not
    its Optuna study, so it stays quick however many trials the job has.
    """
    json_mode(json_output, wide)
    job_id = job_id_or_exit(job_id)
    store = service_or_exit(db_url, storage_url=storage_url)

    def read() -> tuple[JobView, Any, Any]:
        job = guard(lambda: store.get(job_id))
        events = guard(lambda: store.events(job.id, limit=10))
        return job, events, guard(lambda: store.snapshot(job))

    job, events, snapshot = read()
    metrics = metrics_of(job)
    if json_output:
        out.print_json(json.dumps(status_json(job, events, snapshot, metrics), default=str))
        return
    if not watch:
        tables().print(status_view(job, events, snapshot, metrics, width=width()))
        return
    from rich.live import Live

    with Live(status_view(job, events, snapshot, metrics, width=out.width), console=out, refresh_per_second=2) as live:
        while not job.is_final:
            time.sleep(1.0)
            job, events, snapshot = read()
            live.update(status_view(job, events, snapshot, metrics, width=out.width))
    exit_for(job)


@app.command()
def cancel(job_id: JobId, db_url: DbUrl = None) -> None:
    """Cancel a job: a queued job leaves the queue; a running job's trials stop within seconds."""
    job_id = job_id_or_exit(job_id)
    store = service_or_exit(db_url)
    job = guard(lambda: store.cancel(job_id))
    if job.state == JobState.CANCELLED:
        out.print(f"job {job.id} cancelled")
    else:
        out.print(f"job {job.id}: cancel requested; its runner stops the trials within seconds")


@app.command()
def best(
    job_id: JobId,
    json_output: JsonFlag = False,
    db_url: DbUrl = None,
    storage_url: StorageUrl = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """The best trial of a job: its value, its hyperparameters and the registered model URI."""
    json_mode(json_output)
    job_id = job_id_or_exit(job_id)
    store = service_or_exit(db_url, storage_url=storage_url, tracking_uri=tracking_uri)
    job = guard(lambda: store.get(job_id))
    found = guard(lambda: store.best(job))
    if json_output:
        out.print_json(json.dumps(found, default=str))
    else:
        _print_best(job, found)
    if found["best_value"] is None:
        raise typer.Exit(EXIT_FAILED)


def _print_best(job: JobView, found: dict[str, Any]) -> None:
    if found["best_value"] is None:
        err.print(f"job {job.id} ({job.state}) has no completed trial yet")
        return
    out.print(
        f"[bold]{job.name}[/bold] ({job.id}, {job.state}): best {found['metric']} = {found['best_value']:.6g} (trial {found['best_trial']})"
    )
    for name, value in sorted(found["best_params"].items()):
        out.print(f"  {name} = {value}")
    if found["model_uri"]:
        out.print(f"Model: {found['model_uri']}")
    if found["pareto_front"]:
        out.print(pareto_table(found["pareto_front"], found["metrics"], out.width))


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-n", min=1, help="Jobs to run at once.")] = 1,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="Exit once no job is queued or running (it waits for other runners' jobs, and reclaims a dead runner's when its lease expires).",
        ),
    ] = False,
    lease: Annotated[float, typer.Option(min=1.0, help="Lease length in seconds (renewed every third of it).")] = 30.0,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between looks at an empty queue.")] = 2.0,
    db_url: DbUrl = None,
    ray_address: RayAddress = None,
    tracking_uri: TrackingUri = None,
    storage_url: StorageUrl = None,
) -> None:
    """Run queued jobs, N at a time, until stopped. SIGTERM/Ctrl-C hand running jobs back to the queue."""
    from automl.service.runner import Runner

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # --debug: a failed job's traceback too (the runner logs it at DEBUG; the reason is one line at ERROR).
    logging.getLogger("automl").setLevel(logging.DEBUG if state["debug"] else logging.INFO)
    settings = settings_or_exit(db_url, ray_address, tracking_uri, storage_url)
    store = store_or_exit(settings)
    runner = Runner(store, settings, concurrency=concurrency, lease_s=lease, poll_s=poll)
    err.print(f"runner {runner.runner_id}: {concurrency} job(s) at a time from {store.url} (Ctrl-C to stop)")
    guard(lambda: runner.run(until_idle=until_idle))
    err.print(f"runner {runner.runner_id} stopped")


@app.command()
def validate(job_file: Annotated[Path, typer.Argument(help="The job spec (YAML).", show_default=False)]) -> None:
    """Check a job spec without running it: fields, search space, data, objective, and what travels with it."""
    from automl.service import check_job_file

    checked = guard(lambda: check_job_file(job_file))
    spec, plan = checked.spec, checked.plan
    assert plan is not None
    objectives = ", ".join(f"{mode} {metric}" for metric, mode in zip(plan.metrics, plan.modes, strict=True))
    out.print(f"[green]ok[/green] {job_file}: job {spec.name!r}, {objectives}, {spec.budget.trials} trials")
    if plan.strategy is not None:  # what auto picks for this job, and why
        out.print(f"  strategy: {plan.strategy.summary()}", soft_wrap=True, markup=False)
    if checked.code is not None:
        out.print(f"  code: {len(checked.code.files)} files, {checked.code.size / 2**20:.1f} MB, {checked.code.sha256[:12]}")
    if checked.data is not None:
        out.print(f"  data: {checked.data.source}, {checked.data.size / 2**20:.1f} MB, {checked.data.sha256[:12]}")


@app.command()
def spaces() -> None:
    """List the search-space presets in search_spaces/."""
    from rich import box
    from rich.table import Table

    from automl.spaces import list_presets, load_space

    table = Table("preset", "parameters", "description", box=box.SIMPLE_HEAD, header_style="bold")
    for name, description in list_presets().items():
        try:
            params = ", ".join(load_space(name).params)
        except Exception:  # noqa: BLE001
            params = "(invalid)"
        table.add_row(name, params, description)
    out.print(table)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port to serve the MLflow UI on.")] = 5000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    tracking_uri: TrackingUri = None,
) -> None:
    """Open the MLflow UI on this service's runs (Ctrl-C stops it)."""
    from automl.settings import redact_url

    settings = settings_or_exit(tracking_uri=tracking_uri)
    if settings.artifact_root is None:
        out.print(f"The tracking server has its own UI: open {redact_url(settings.tracking_uri)}")
        return
    # The store's URI (a password with it, for a database) goes by environment, not on the
    # command line, where every user of the machine can read it (ps, /proc/PID/cmdline).
    os.environ["MLFLOW_BACKEND_STORE_URI"] = settings.tracking_uri
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--host",
        host,
        "--port",
        str(port),
        "--default-artifact-root",
        settings.artifact_root,
        "--workers",
        "1",
    ]
    # One reader needs one worker, and MLflow's job runner (7 more processes) serves nothing here:
    # together they halve the time until the UI answers on a small machine.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    err.print(f"MLflow UI on http://{host}:{port} for {redact_url(settings.tracking_uri)} (Ctrl-C to stop)")
    sys.stdout.flush()
    os.execv(sys.executable, command)  # the UI takes over this process: signals reach it directly


def _add_operator_commands() -> None:
    from automl.cli.admin import admin_app, serve

    app.command("server")(serve)
    app.add_typer(admin_app, name="admin")


_add_operator_commands()


def main() -> None:
    """The console-script entry point."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    app()
