"""The web view of ``automl server``: the login page, the job list, a job's live page, and the
studies' dashboard (:mod:`automl.server.dashboard`), on the same origin as the API.

What must stay true: a page shows a user what the API shows them, read through the same
:class:`~automl.service.job_service.LocalJobService` (another user's job is a 404 page, as if it did
not exist; admins see all); a page asked without a live token sends the browser to ``/login``; the
token travels only in the login form's body and in the cookie (HttpOnly, SameSite=Strict, Secure
behind HTTPS), never in a URL, a page or a log line; what changes on a page is drawn by its script
from the API (``/api/v1/jobs``, a job's stream), the same answers the CLI reads.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from automl.errors import InputError
from automl.server.api import service_for
from automl.server.auth import COOKIE, same_origin, user_of
from automl.server.pages import STATIC, STATIC_URL, local_path, login_redirect, not_found_page, page
from automl.service.wire import event_to_wire, job_to_wire, snapshot_to_wire
from automl.store import JobNotFound

if TYPE_CHECKING:
    from automl.store import JobView

router = APIRouter(include_in_schema=False)
LIST_LIMIT = 100  # the job list shows the newest this many
REFRESH_MS = 3000  # how often the job list asks for news
EVENTS = 20  # a job page's latest events
BAD_TOKEN = (
    "That token is not valid: it may be mistyped, expired or revoked. "
    "Ask your admin for a new one (automl admin token create NAME)."
)
NOT_HERE = "Log in from this server's own login page: the form was sent from somewhere else."


def mount_web(app: FastAPI) -> None:
    """Add the web view's pages, their scripts and styles, and the studies' dashboard to ``app``."""
    from fastapi.staticfiles import StaticFiles

    from automl.server.dashboard import StudiesDashboard

    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="web-static")
    app.add_middleware(StudiesDashboard)


@router.get("/login")
def login_form(request: Request, next_path: Annotated[str, Query(alias="next", max_length=2000)] = "/") -> Response:
    """The login form: one field, for a token."""
    return page(request, "login.html", {"next": local_path(next_path), "error": None})


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the token the form sent; if it is live, keep it in the cookie and go on to the page asked for."""
    try:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
    except ValueError:  # more fields than the form has: not from the form
        form = {}
    token = (form.get("token") or [""])[0].strip()
    target = local_path((form.get("next") or ["/"])[0])
    if not same_origin(request):  # another site's page must not log a browser in as someone else
        return page(request, "login.html", {"next": target, "error": NOT_HERE}, status_code=403)
    state = request.app.state
    user = await run_in_threadpool(state.tokens.user, state.store, token) if token else None
    if user is None:
        return page(request, "login.html", {"next": target, "error": BAD_TOKEN}, status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, path="/", httponly=True, samesite="strict", secure=bool(state.config.secure_cookies))
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request) -> Response:
    """Forget the token (the cookie); the token itself stays live until it expires or is revoked."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=bool(request.app.state.config.secure_cookies)
    )
    return response


@router.get("/")
def job_list(request: Request) -> Response:
    """The caller's jobs (an admin's: everyone's), newest first, refreshed every few seconds."""
    user = user_of(request)
    if user is None:
        return login_redirect(request)
    jobs = [job_to_wire(j) for j in service_for(request, user).list(limit=LIST_LIMIT)]
    return page(request, "jobs.html", {"user": user, "jobs": jobs, "limit": LIST_LIMIT, "refresh_ms": REFRESH_MS})


@router.get("/jobs/{job_id}")
def job_page(job_id: str, request: Request) -> Response:
    """A job's page: its progress drawn live from its stream, its top trials and events, Cancel."""
    user = user_of(request)
    if user is None:
        return login_redirect(request)
    service = service_for(request, user)
    try:
        job = service.get(job_id)
    except (JobNotFound, InputError):
        return not_found_page(request, f"job {job_id[:24]}", user)
    status = {
        "job": job_to_wire(job),
        "snapshot": snapshot_to_wire(service.snapshot(job)),
        "events": [event_to_wire(e) for e in service.store.events(job.id, limit=EVENTS)],
    }
    context = {
        "user": user,
        "job": job,
        "status": status,
        "metrics": metric_names(job),
        "mlflow_ui": (request.app.state.config.mlflow_ui_url or "").rstrip("/"),
    }
    return page(request, "job.html", context)


@router.get("/jobs/{job_id}/dashboard")
def job_dashboard(job_id: str, request: Request) -> Response:
    """To the job's study in the dashboard (its list, while the job has not started yet)."""
    from automl.server.dashboard import study_id_of

    user = user_of(request)
    if user is None:
        return login_redirect(request)
    try:
        job = service_for(request, user).get(job_id)
    except (JobNotFound, InputError):
        return not_found_page(request, f"job {job_id[:24]}", user)
    study_id = study_id_of(request.app.state.settings, job.study_name)
    return RedirectResponse("/dashboard" if study_id is None else f"/dashboard/studies/{study_id}", status_code=303)


def metric_names(job: JobView) -> list[str]:
    """The job's objectives, as its plan resolved them (else as its spec names them)."""
    import yaml

    names: Any = None
    if job.plan_json:
        try:
            names = json.loads(job.plan_json).get("metrics")
        except (ValueError, AttributeError):
            names = None
    if not names:
        spec = yaml.safe_load(job.spec_yaml or "") or {}
        names = spec.get("metric") if isinstance(spec, dict) else None
    if isinstance(names, str):
        return [names]
    return [str(n) for n in names] if isinstance(names, list) and names else ["value"]
