"""``automl server`` and ``automl admin``: the operator's commands, run where the job store's credentials are.

Users and tokens live in the job store (:mod:`automl.store.users`); these commands open it
directly, never through a server. What must stay true: a token's secret is printed once, on
stdout, when it is made, and nowhere else (never in a list, a log or an error).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer

from automl.cli.exits import err, guard, out, settings_or_exit, store_or_exit

admin_app = typer.Typer(
    help="Manage the users and tokens of [bold]automl server[/bold] (run where the job store is).", no_args_is_help=True
)
user_app = typer.Typer(help="Add, list, disable users.", no_args_is_help=True)
token_app = typer.Typer(help="Create, list, revoke tokens.", no_args_is_help=True)
admin_app.add_typer(user_app, name="user")
admin_app.add_typer(token_app, name="token")

DbUrl = Annotated[
    str | None,
    typer.Option("--db-url", envvar="AUTOML_DB_URL", help="Job store URL (default: SQLite in $AUTOML_HOME).", show_default=False),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")]


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (AUTOML_SERVER_HOST; default 127.0.0.1).", show_default=False)
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (AUTOML_SERVER_PORT; default 8080).", show_default=False)] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (AUTOML_SERVER_WORKERS; default 1).", show_default=False)
    ] = None,
    db_url: DbUrl = None,
) -> None:
    """Serve the HTTP API and the web view in front of the job store; users need a token ([bold]automl admin token create NAME[/bold]).

    It holds the job store, Optuna storage and MLflow settings (AUTOML_DB_URL, AUTOML_STORAGE_URL,
    MLFLOW_TRACKING_URI); it keeps no state of its own, so several can serve one job store.
    The API's schema is at /docs and /openapi.json.
    """
    import os

    import uvicorn

    from automl.server.config import ServerConfig
    from automl.settings import redact_url

    if db_url:
        os.environ["AUTOML_DB_URL"] = db_url  # the workers build the app from the environment
    settings = settings_or_exit()
    store_or_exit(settings).engine.dispose()  # migrated, reachable: fail here, with one line, not in a worker
    config = guard(ServerConfig)
    host = host or config.host
    port = port or config.port
    workers = workers or config.workers
    err.print(f"automl server on http://{host}:{port} for {redact_url(settings.db_url)} ({workers} worker(s); Ctrl-C stops it)")
    uvicorn.run(
        "automl.server.entry:app", factory=True, host=host, port=port, workers=workers, log_level="info", proxy_headers=True
    )


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The user's name (lower case letters, digits, _ . @ -).", show_default=False)],
    admin: Annotated[bool, typer.Option("--admin", help="An admin sees and cancels every job.")] = False,
    db_url: DbUrl = None,
) -> None:
    """Add a user; then make them a token with [bold]automl admin token create NAME[/bold]."""
    store = store_or_exit(settings_or_exit(db_url))
    user = guard(lambda: store.users.add_user(name, role="admin" if admin else "user"))
    out.print(f"user {user.name} ({user.role}) added; give them a token: automl admin token create {user.name}")


@user_app.command("list")
def user_list(json_output: JsonFlag = False, db_url: DbUrl = None) -> None:
    """List the users, their roles and how many live tokens each has."""
    from datetime import UTC, datetime

    from rich import box
    from rich.table import Table

    store = store_or_exit(settings_or_exit(db_url))
    users = guard(store.users.list_users)
    tokens = guard(store.users.list_tokens)
    now = datetime.now(UTC).replace(tzinfo=None)
    live = {u.name: sum(1 for t in tokens if t.user == u.name and t.is_live(now)) for u in users}
    if json_output:
        out.print_json(
            json.dumps([{"name": u.name, "role": u.role, "disabled": u.disabled, "live_tokens": live[u.name]} for u in users])
        )
        return
    if not users:
        err.print("no users; add one with: automl admin user add NAME")
        return
    table = Table("user", "role", "live tokens", "state", box=box.SIMPLE_HEAD, header_style="bold")
    for user in users:
        table.add_row(user.name, user.role, str(live[user.name]), "disabled" if user.disabled else "active")
    out.print(table)


@user_app.command("disable")
def user_disable(
    name: Annotated[str, typer.Argument(help="The user.", show_default=False)],
    enable: Annotated[bool, typer.Option("--enable", help="Enable the user again instead.")] = False,
    db_url: DbUrl = None,
) -> None:
    """Disable a user: none of their tokens works any more (their jobs stay)."""
    store = store_or_exit(settings_or_exit(db_url))
    user = guard(lambda: store.users.set_disabled(name, not enable))
    out.print(f"user {user.name} {'disabled' if user.disabled else 'enabled'}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="The user the token is for.", show_default=False)],
    days: Annotated[float, typer.Option("--days", min=0, help="Days until it expires (0: never).")] = 90.0,
    label: Annotated[str | None, typer.Option(help="What it is for (shown in the list).", show_default=False)] = None,
    json_output: JsonFlag = False,
    db_url: DbUrl = None,
) -> None:
    """Make a token for a user. Its secret is printed once, here: only its hash is kept."""
    store = store_or_exit(settings_or_exit(db_url))
    view, secret = guard(lambda: store.users.create_token(name, expires_in=timedelta(days=days) if days else None, label=label))
    if json_output:
        out.print_json(json.dumps({"id": view.id, "user": view.user, "token": secret, "expires_at": _when(view.expires_at)}))
        return
    out.print(secret, highlight=False, soft_wrap=True)
    expiry = f"expires {_when(view.expires_at)} UTC" if view.expires_at else "never expires"
    err.print(f"token {view.id} for {view.user} ({expiry}); it is shown only now. Use it as: export AUTOML_TOKEN=<token>")


@token_app.command("list")
def token_list(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.", show_default=False)] = None,
    json_output: JsonFlag = False,
    db_url: DbUrl = None,
) -> None:
    """List tokens (never their secrets): id, user, label, expiry, state, last use."""
    from datetime import UTC, datetime

    from rich import box
    from rich.table import Table

    store = store_or_exit(settings_or_exit(db_url))
    tokens = guard(lambda: store.users.list_tokens(name))
    now = datetime.now(UTC).replace(tzinfo=None)

    def state(t: object) -> str:
        from automl.store.users import TokenView

        assert isinstance(t, TokenView)
        return "revoked" if t.revoked_at else ("expired" if not t.is_live(now) else "live")

    if json_output:
        rows = [
            {
                "id": t.id,
                "user": t.user,
                "label": t.label,
                "state": state(t),
                "expires_at": _when(t.expires_at),
                "last_used_at": _when(t.last_used_at),
            }
            for t in tokens
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table("id", "user", "label", "state", "expires (UTC)", "last used (UTC)", box=box.SIMPLE_HEAD, header_style="bold")
    for t in tokens:
        table.add_row(t.id, t.user, t.label or "", state(t), _when(t.expires_at) or "never", _when(t.last_used_at) or "-")
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[
        str, typer.Argument(help="The token's id (from the list; the 8 hex digits after aml_).", show_default=False)
    ],
    db_url: DbUrl = None,
) -> None:
    """Revoke a token: it stops working at once here, within seconds on every server."""
    store = store_or_exit(settings_or_exit(db_url))
    view = guard(lambda: store.users.revoke_token(token_id))
    out.print(f"token {view.id} of {view.user} revoked")


def _when(moment: object) -> str | None:
    from datetime import datetime

    return moment.strftime("%Y-%m-%d %H:%M:%S") if isinstance(moment, datetime) else None
