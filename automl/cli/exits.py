"""How a command of the ``automl`` command line ends: its exit code, and an error as one line;
and the three things the job commands open first (settings, a job id, the job store), each
guarded that way.

Exit codes: 0 success; 1 the job failed, was cancelled or no trial completed, or a service
could not be reached; 2 the input was invalid (nothing was written). What must stay true: a
command runs whatever can fail through :func:`guard`, so an error prints one line on stderr
(the traceback only with ``--debug``) and exits with the code its kind implies
(:class:`~automl.errors.InputError`: 2, anything else: 1); text from a job or from the user
is never read as rich markup. Importing this module loads nothing heavy: ``automl --help``
stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

from automl.states import JobState

if TYPE_CHECKING:
    from automl.service.job_service import JobService
    from automl.settings import Settings
    from automl.store import JobStore, JobView

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

# The command line's two streams: results on stdout, everything else (errors, progress) on stderr.
out = Console()
err = Console(stderr=True)
# Set by the root command's --debug option, and by a command's --json (errors as a JSON object on stdout).
state: dict[str, Any] = {"debug": False, "json": False, "wide": False}
WIDE = 1000  # what --wide prints at: no table squeezed, no line wrapped


def json_mode(active: bool, wide: bool = False) -> None:
    """What a command's ``--json`` and ``--wide`` ask for: errors as JSON on stdout; full-width tables."""
    state["json"] = active
    state["wide"] = wide


def width() -> int:
    """The width tables are laid out for: the terminal's (80 when piped), or :data:`WIDE` with ``--wide``."""
    return WIDE if state["wide"] else out.width


def tables() -> Console:
    """Where a command prints its tables: stdout, :data:`WIDE` columns wide with ``--wide``."""
    return Console(width=WIDE) if state["wide"] else out


def guard(call: Any) -> Any:
    """Run ``call``; turn any error into one line on stderr and the exit code it implies."""
    try:
        return call()
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001
        fail(exc)


def exit_for(job: JobView) -> None:
    """Exit 0 if the job succeeded; else print its state and error in one line and exit 1."""
    if job.state == JobState.SUCCEEDED:
        raise typer.Exit(EXIT_OK)
    from rich.markup import escape

    # A job's error may quote a trial's exception text: never let rich read it as markup.
    err.print(f"[red]job {job.id} {job.state}[/red]" + (f": {escape(job.error)}" if job.error else ""), highlight=False)
    raise typer.Exit(EXIT_FAILED)


def invalid(message: str) -> Exception:
    """An input error (exit 2) for a command's own option checks."""
    from automl.errors import SpecError

    return SpecError(message)


def fail(exc: BaseException) -> NoReturn:
    """Print one line (or the traceback with --debug) and exit with the code the error implies."""
    from automl.errors import AutomlError, InputError

    if state["debug"]:
        import traceback

        traceback.print_exception(exc)
    code = EXIT_INVALID if isinstance(exc, InputError) else EXIT_FAILED
    message = str(exc) if isinstance(exc, AutomlError) else f"{type(exc).__name__}: {exc}"
    from rich.markup import escape

    if state["json"]:  # a script reads stdout: the error is a JSON object there (the exit code is the same)
        import json
        import sys

        sys.stdout.write(json.dumps({"error": message, "kind": type(exc).__name__, "exit_code": code}) + "\n")
        sys.stdout.flush()
    # Escaped: a message quotes the user's input, and "[/x]" in it is not markup (rich would raise).
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    if not state["debug"] and not isinstance(exc, AutomlError):
        err.print("(run with --debug for the traceback)")
    raise typer.Exit(code)


def settings_or_exit(
    db_url: str | None = None,
    ray_address: str | None = None,
    tracking_uri: str | None = None,
    storage_url: str | None = None,
) -> Settings:
    """The settings from these options and the environment; an error exits as :func:`guard` says."""
    from automl.settings import resolve_settings

    return guard(
        lambda: resolve_settings(db_url=db_url, ray_address=ray_address, tracking_uri=tracking_uri, storage_url=storage_url)
    )


def job_id_or_exit(text: str) -> str:
    """The job id or prefix given, checked before any service is opened (exit 2 if it cannot be one)."""
    from automl.store.records import check_job_id

    return guard(lambda: check_job_id(text))


def store_or_exit(settings: Settings) -> JobStore:
    """The job store the settings name, opened (and migrated); exit 1 when it cannot be reached."""
    from automl.service import open_job_store

    return guard(lambda: open_job_store(settings))


def service_or_exit(db_url: str | None = None, storage_url: str | None = None, tracking_uri: str | None = None) -> JobService:
    """The jobs this command works on: through ``automl server`` when ``AUTOML_SERVER`` is set
    (the options naming stores are then the server's business and ignored), else the job store
    the settings name, opened here."""
    from automl.client import server_from_env
    from automl.service.job_service import LocalJobService

    remote = guard(server_from_env)
    if remote is not None:
        return remote
    settings = settings_or_exit(db_url, tracking_uri=tracking_uri, storage_url=storage_url)
    return LocalJobService(store_or_exit(settings), settings)
