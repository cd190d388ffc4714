"""The ``automl server`` application: the job API, the web view, the studies' dashboard, and the
answers to what goes wrong.

What must stay true: an error the service raises on purpose answers with its status and its one
line (``{"error": ..., "kind": ...}``): 401 no live token, 404 no such job (of the caller's), 409
a job that cannot do that now, 413 a body over its bound, 422 bad input (the field named), 503 the
job store is down; anything else is a 500 whose body says only that, its traceback going to the
server's log. The application keeps nothing between requests that another server would need.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from automl.server.auth import TokenCache
from automl.server.config import ServerConfig
from automl.server.limits import BodyLimit, BodyTooLarge

if TYPE_CHECKING:
    from automl.settings import Settings

logger = logging.getLogger("automl.server")


def create_app(settings: Settings | None = None, config: ServerConfig | None = None) -> FastAPI:
    """The application, serving the job store ``settings`` name (default: the environment's)."""
    from automl.settings import resolve_settings
    from automl.shipping.code import MAX_MB
    from automl.shipping.data import upload_limit_mb

    settings = settings or resolve_settings()
    config = config or ServerConfig()
    blob_limits = {"code": int(min(config.max_code_mb, MAX_MB) * 2**20), "data": int(upload_limit_mb() * 2**20)}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from automl.service import open_job_store

        app.state.store = open_job_store(settings)
        notifier = _start_notifier(app.state.store) if config.notifier else None
        try:
            yield
        finally:
            if notifier is not None:
                notifier.stop()
            app.state.store.engine.dispose()

    app = FastAPI(
        title="automl server",
        summary="Hyperparameter search jobs for PyTorch models: submit, watch, cancel; Optuna, Ray Tune and MLflow behind.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.config = config
    app.state.tokens = TokenCache(config.auth_cache_s)
    app.state.blob_limits = blob_limits
    json_limit = config.max_json_kb * 2**10
    app.add_middleware(
        BodyLimit, limit_for=lambda path: max(blob_limits.values()) if path.startswith("/api/v1/blobs/") else json_limit
    )
    _add_error_answers(app)

    from automl.server.api import router

    app.include_router(router)
    from automl.server.web import mount_web

    mount_web(app)
    return app


def _start_notifier(store: Any) -> Any:
    """Deliver job-end webhooks from this server too (deliveries are claimed, so each goes once)."""
    from automl.service.notify import notifier_from_env

    notifier = notifier_from_env(store)
    notifier.start()
    return notifier


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("automl-service")
    except PackageNotFoundError:
        return "0"


def error_body(message: str, kind: str, **more: Any) -> dict[str, Any]:
    return {"error": message, "kind": kind, **more}


def _add_error_answers(app: FastAPI) -> None:
    from automl.errors import AutomlError, InputError
    from automl.store import JobNotFound, StoreUnavailable
    from automl.store.users import UserNotFound

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "BodyTooLarge" if isinstance(exc, BodyTooLarge) else "HTTPError"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        return JSONResponse(error_body("; ".join(problems), "RequestValidationError", problems=problems), status_code=422)

    @app.exception_handler(AutomlError)
    async def automl_error(request: Request, exc: AutomlError) -> JSONResponse:
        if isinstance(exc, (JobNotFound, UserNotFound)):
            status = 404
        elif isinstance(exc, InputError):
            status = 422
        elif isinstance(exc, StoreUnavailable):
            status = 503
        else:
            status = 409
        extra = {"problems": exc.problems} if hasattr(exc, "problems") else {}
        return JSONResponse(error_body(str(exc), type(exc).__name__, **extra), status_code=status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex[:8]
        logger.error("request %s %s failed (reference %s)", request.method, request.url.path, reference, exc_info=exc)
        message = f"internal error (reference {reference}); the server's log has the details"
        return JSONResponse(error_body(message, "InternalError"), status_code=500)


def _problem(error: dict[str, Any]) -> str:
    """One line for one of pydantic's errors: where, and what is wrong (for a body that is not JSON, where it broke)."""
    if error.get("type") == "json_invalid":  # loc is ("body", character offset), msg a bare "JSON decode error"
        loc = error.get("loc", ())
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f"body: not valid JSON{at}: {(error.get('ctx') or {}).get('error', 'cannot be decoded')}"
    return f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
