"""The ``automl`` command line: a thin layer over the Python API.

Exit codes: 0 success; 1 the job ran but failed (or no trial completed), or a service
could not be reached; 2 the input was invalid (nothing was written). Errors print one line;
``--debug`` shows the traceback. Heavy libraries load only inside the commands that need
them, so ``automl --help`` is instant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from automl.results import SearchResult

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

app = typer.Typer(
    name="automl",
    help="Hyperparameter search for PyTorch models: Optuna searches, Ray Tune runs the trials, MLflow records them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Hyperparameter search for PyTorch models.

    State lives in $AUTOML_HOME (default ~/.automl). Point at real services with
    AUTOML_STORAGE_URL (Optuna storage), MLFLOW_TRACKING_URI and RAY_ADDRESS.
    """
    _state["debug"] = debug


@app.command()
def run(
    job_file: Annotated[Path, typer.Argument(help="The job spec (YAML).", show_default=False)],
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the live progress bar.")] = True,
    top: Annotated[int, typer.Option(help="How many of the best trials to list.")] = 5,
) -> None:
    """Run a search job in the foreground, with a live progress bar, and show the best trials.

    Example: [bold]automl run examples/iris.yaml[/bold]
    """
    from automl.engine import plan_search, run_search
    from automl.spec import load_spec

    try:
        spec = load_spec(job_file)
        plan = plan_search(spec, base_dir=job_file.resolve().parent)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    if not json_output:
        what = f"{spec.trainer.name} on {spec.trainer.dataset}" if spec.trainer else spec.objective
        err.print(
            f"[bold]{spec.name}[/bold]: {spec.budget.trials} trials of {what}, "
            f"{spec.sampler.name} sampler, {spec.scheduler.name} scheduler, "
            f"{'maximising' if plan.mode == 'max' else 'minimising'} {plan.metric}"
        )
    sink = None
    if progress and not json_output:
        from automl.progress import RichProgress

        sink = RichProgress(err)
    try:
        result = run_search(plan, progress=sink)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    if json_output:
        out.print_json(json.dumps(result_json(result), default=str))
    else:
        print_result(result, top=top)
    if result.best_value is None:
        err.print("[red]error:[/red] no trial completed; see the failed trials above and in MLflow.")
        raise typer.Exit(EXIT_FAILED)


@app.command()
def validate(
    job_file: Annotated[Path, typer.Argument(help="The job spec (YAML).", show_default=False)],
) -> None:
    """Check a job spec without running it: fields, search space, data and objective."""
    from automl.engine import plan_search
    from automl.spec import load_spec

    try:
        spec = load_spec(job_file)
        plan = plan_search(spec, base_dir=job_file.resolve().parent)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    out.print(f"[green]ok[/green] {job_file}: job {spec.name!r}, {plan.mode} {plan.metric}, {spec.budget.trials} trials")


@app.command()
def spaces() -> None:
    """List the search-space presets in search_spaces/."""
    from automl.spaces import list_presets, load_space

    table = Table("preset", "parameters", "description", box=None, header_style="bold")
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
    tracking_uri: Annotated[
        str | None, typer.Option(envvar="MLFLOW_TRACKING_URI", help="The MLflow store to show (default: the embedded one).")
    ] = None,
) -> None:
    """Open the MLflow UI on this service's runs (Ctrl-C stops it)."""
    from automl.settings import resolve_settings

    settings = resolve_settings(tracking_uri=tracking_uri)
    if not settings.tracking_uri.startswith(("sqlite:", "postgresql", "mysql", "file:")) and "://" in settings.tracking_uri:
        out.print(f"The tracking server has its own UI: open {settings.tracking_uri}")
        return
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.tracking_uri, "--host", host, "--port", str(port)]
    if settings.artifact_root:
        command += ["--default-artifact-root", settings.artifact_root]
    err.print(f"MLflow UI on http://{host}:{port} for {settings.tracking_uri} (Ctrl-C to stop)")
    try:
        raise typer.Exit(subprocess.call(command))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None


def print_result(result: SearchResult, *, top: int = 5, console: Console | None = None) -> None:
    """The end-of-job report: the best trials as a table, and where to see everything."""
    console = console or out
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.state_counts.items()))
    best = result.top(top)
    param_names = sorted({name for t in best for name in t.params})
    table = Table(
        title=f"Top trials of {result.job_name} ({counts})", header_style="bold", title_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("trial", justify="right", min_width=5, no_wrap=True)
    table.add_column(result.metric, justify="right", style="green", no_wrap=True)
    for name in param_names:
        table.add_column(name, justify="right", no_wrap=True)
    for trial in best:
        table.add_row(str(trial.number), f"{trial.value:.4g}", *[_fmt(trial.params.get(name)) for name in param_names])
    console.print(table)
    failed = [t for t in result.trials if t.state == "FAIL"]
    for trial in failed[:5]:
        console.print(f"[red]trial {trial.number} failed:[/red] {trial.fail_reason}")
    if result.best_value is not None:
        console.print(f"Best: trial {result.best_trial_number}, {result.metric} = {result.best_value:.6g}")
    if result.model_uri:
        console.print(f"Model: {result.model_uri}")
    if result.parent_run_id:
        console.print(f"MLflow: run {result.parent_run_id} in experiment {result.experiment_id}; see it with [bold]automl ui[/bold] at")
        console.print(f"  http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs/{result.parent_run_id}", soft_wrap=True)
    console.print(f"Optuna: study {result.study_name!r} in {result.storage_url}")
    if result.tracking_errors:
        console.print(f"[yellow]warning:[/yellow] {len(result.tracking_errors)} MLflow writes failed; first: {result.tracking_errors[0]}")


def result_json(result: SearchResult) -> dict[str, Any]:
    """The result as plain JSON for scripts."""
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
        "tracking_uri": result.tracking_uri,
        "states": result.state_counts,
        "trials": [t.__dict__ for t in result.trials],
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.3g}"
    return str(value)


def _fail(exc: BaseException) -> NoReturn:
    """Print one line (or the traceback with --debug) and exit with the code the error implies."""
    from automl.errors import AutomlError, SpecError

    if _state["debug"]:
        import traceback

        traceback.print_exception(exc)
    code = EXIT_INVALID if isinstance(exc, SpecError) else EXIT_FAILED
    message = str(exc) if isinstance(exc, AutomlError) else f"{type(exc).__name__}: {exc}"
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    if not _state["debug"] and not isinstance(exc, AutomlError):
        err.print("(run with --debug for the traceback)")
    raise typer.Exit(code)


def main() -> None:
    """The console-script entry point."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    app()


if __name__ == "__main__":
    main()
