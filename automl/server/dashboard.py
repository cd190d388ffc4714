"""optuna-dashboard on the jobs' studies, behind the server's login: each user sees their own jobs' studies.

optuna-dashboard's pages live under ``/dashboard/``; its bundled script calls absolute paths
(``/api/meta``, ``/api/studies/...``, ``/static/bundle.js``, ``/csv/...``) and has no setting for a
prefix, so exactly those paths (:data:`DASHBOARD_PATHS`) are passed to it; none of them is the
job API's (``/api/v1``). It is built on first use, on the Optuna storage the jobs use.

What must stay true: every request to it carries a live token (a page without one goes to
``/login``, the rest get 401); it is read-only, since a study belongs to its job (renaming,
deleting or telling trials through it would make the study, MLflow and the job row disagree), so
anything but GET and HEAD is 405; for a user who is not an admin, its study list holds only the
studies of their own jobs, and any other study id is 404, exactly like a study that does not exist.
A study list whose shape this module does not know is refused, never passed on unfiltered.
"""

from __future__ import annotations

import json
import re
import threading
from typing import TYPE_CHECKING, cast

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from automl.server.auth import UNAUTHORIZED, user_of
from automl.server.pages import login_redirect, not_found_page

if TYPE_CHECKING:
    from automl.settings import Settings
    from automl.store import JobStore
    from automl.store.users import UserView

DASHBOARD_PATHS = re.compile(
    r"/dashboard(/.*)?|/api/(meta|studies|trials|artifacts|llm)(/.*)?|/(csv|artifacts|static)/.+|/favicon\.ico"
)
# The paths that name a study by its id: the pages, its API, its CSV, its artifacts.
STUDY_ID = re.compile(r"/(?:dashboard/studies|api/studies|csv|artifacts|api/artifacts)/(\d+)(?:/.*)?")
STUDY_LIST = "/api/studies"
LIST_KEYS = ("study_summaries", "studies")  # optuna-dashboard 0.21 answers the first; a TODO there renames it
READ_ONLY = (
    "the studies' dashboard is read-only in automl server: a study belongs to its job; "
    "steer the job with the automl CLI or the API (/api/v1/jobs) instead"
)


class StudiesDashboard:
    """ASGI middleware: the dashboard's paths to optuna-dashboard, after the checks above; the rest to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._dashboard: ASGIApp | None = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not DASHBOARD_PATHS.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        user, refusal = await run_in_threadpool(self._check, request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        assert user is not None, "no refusal: a user was found"
        dashboard = await run_in_threadpool(self._app, request.app.state.settings)
        if user.is_admin or scope["path"].rstrip("/") != STUDY_LIST:
            await dashboard(scope, receive, send)
            return
        names = await run_in_threadpool(request.app.state.store.study_names, owner=user.name)
        await _filtered_list(dashboard, names, scope, receive, send)

    def _check(self, request: Request) -> tuple[UserView | None, Response | None]:
        """Who asks, and the answer if the dashboard must not see the request (blocking: it reads the job store)."""
        path = request.url.path
        user = user_of(request)
        if user is None:
            if path.startswith("/dashboard"):
                return None, login_redirect(request)
            return None, _json(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        if request.method not in ("GET", "HEAD"):
            return user, _json(405, READ_ONLY, headers={"Allow": "GET, HEAD"})
        named = STUDY_ID.fullmatch(path)
        if named is None or user.is_admin:
            return user, None
        study_id = int(named[1])
        if owns_study(request.app.state.settings, request.app.state.store, user.name, study_id):
            return user, None
        if path.startswith("/dashboard"):
            return user, not_found_page(request, f"study {study_id}", user)
        return user, _json(404, f"study_id={study_id} is not found")  # optuna-dashboard's words for a missing study

    def _app(self, settings: Settings) -> ASGIApp:
        """optuna-dashboard on the jobs' Optuna storage, as an ASGI app (made on first use)."""
        with self._lock:
            if self._dashboard is None:
                import optuna_dashboard
                from a2wsgi import WSGIMiddleware

                from automl.engine.studies import open_storage

                wsgi = optuna_dashboard.wsgi(open_storage(settings.storage_url))
                # a2wsgi types ASGI's messages as TypedDicts; they are the same dictionaries.
                self._dashboard = cast("ASGIApp", WSGIMiddleware(wsgi, workers=4))
            return self._dashboard


def owns_study(settings: Settings, store: JobStore, user: str, study_id: int) -> bool:
    """Whether the Optuna study ``study_id`` is one of ``user``'s jobs' (no study by that id: ``False``)."""
    from automl.engine.studies import open_storage

    try:
        name = open_storage(settings.storage_url).get_study_name_from_id(study_id)
    except KeyError:
        return False
    return store.has_study(name, owner=user)


def study_id_of(settings: Settings, study_name: str) -> int | None:
    """The dashboard's id of the study ``study_name``; ``None`` while it does not exist (a queued job)."""
    from automl.engine.studies import open_storage

    try:
        return int(open_storage(settings.storage_url).get_study_id_from_name(study_name))
    except KeyError:
        return None


async def _filtered_list(dashboard: ASGIApp, names: set[str], scope: Scope, receive: Receive, send: Send) -> None:
    """The dashboard's study list, less the studies not in ``names`` (to HEAD too: its length is the filtered one's)."""
    start: Message = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await dashboard({**scope, "method": "GET"}, receive, keep)
    body = b"".join(chunks)
    if start.get("status") == 200:
        data = json.loads(body)
        keys = [k for k in LIST_KEYS if isinstance(data.get(k), list)]
        if not keys:
            unknown = "the dashboard's study list came in a shape automl server does not know, so it cannot filter it"
            await _json(502, unknown)(scope, receive, send)
            return
        for key in keys:
            data[key] = [s for s in data[key] if isinstance(s, dict) and s.get("study_name") in names]
        body = json.dumps(data).encode()
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})


def _json(status: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in the API's shape (``error``, ``kind``) and the dashboard's (``reason``, which its pages show)."""
    return JSONResponse({"error": message, "kind": "HTTPError", "reason": message}, status_code=status, headers=headers)
