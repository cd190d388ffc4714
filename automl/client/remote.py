"""The job service through ``automl server``'s HTTP API, for a user who holds only a token.

What must stay true: it raises what :class:`~automl.service.job_service.LocalJobService` raises for
the same input (bad input: an :class:`~automl.errors.InputError`; no such job: ``JobNotFound``;
anything else the server refuses: an :class:`~automl.errors.AutomlError`), with the server's one
line as its text, so the CLI prints the same and exits the same; the token goes only in the
``Authorization`` header and never into a message.
"""

from __future__ import annotations

import builtins
import os
from typing import TYPE_CHECKING, Any

from automl.errors import AutomlError, InputError
from automl.service.wire import event_from_wire, job_from_wire, snapshot_from_wire
from automl.store.jobs import JobNotFound, StoreUnavailable

if TYPE_CHECKING:
    import httpx

    from automl.service.submit import CheckedJob
    from automl.store import EventView, JobView
    from automl.store.snapshot import JobSnapshot

SERVER_ENV = "AUTOML_SERVER"
TOKEN_ENV = "AUTOML_TOKEN"
TIMEOUT_S = 30.0
UPLOAD_TIMEOUT_S = 600.0


class ServerError(AutomlError):
    """``automl server`` could not be reached, or refused the request for a reason of its own."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerInputError(InputError):
    """The server found the input invalid (the CLI exits 2, as it does without a server)."""


def server_from_env() -> RemoteJobService | None:
    """The service at ``$AUTOML_SERVER`` with ``$AUTOML_TOKEN``; ``None`` when no server is named.

    Raises:
        InputError: a server is named but no token is set.
    """
    url = (os.environ.get(SERVER_ENV) or "").strip()
    if not url:
        return None
    token = (os.environ.get(TOKEN_ENV) or "").strip()
    if not token:
        raise InputError(
            f"{SERVER_ENV} is set but {TOKEN_ENV} is not: set it to your token (ask your admin: automl admin token create NAME)"
        )
    return RemoteJobService(url, token)


class RemoteJobService:
    """Jobs through ``automl server`` at ``url``, as the user whose ``token`` it is."""

    def __init__(self, url: str, token: str, *, transport: httpx.BaseTransport | None = None) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise InputError(f"{SERVER_ENV}: {url[:80]!r} is not an http:// or https:// URL")
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}", "User-Agent": "automl-client"},
            timeout=TIMEOUT_S,
            transport=transport,
        )

    @property
    def where(self) -> str:
        return f"the server {self.url}"

    def close(self) -> None:
        self._http.close()

    # -- the job service ------------------------------------------------------------------

    def submit(self, job: CheckedJob) -> JobView:
        from automl.service.submit import job_form, job_travels

        travels = job_travels(job)
        if job.code is not None:
            self._upload("code", job.code.sha256, job.code.content)
        if job.data is not None and job.data.upload:
            self._upload("data", job.data.sha256, job.data.content())
        form = job_form(job, travels)
        return job_from_wire(self._call("POST", "/jobs", json=form.__dict__))

    def rerun(self, job_id: str) -> tuple[JobView, list[str]]:
        found = self._call("POST", f"/jobs/{_path(job_id)}/rerun")
        return job_from_wire(found["job"]), list(found["notes"])

    def get(self, job_id: str) -> JobView:
        return job_from_wire(self._call("GET", f"/jobs/{_path(job_id)}"))

    def list(self, *, states: tuple[str, ...] | None = None, limit: int = 50) -> list[JobView]:
        params: dict[str, Any] = {"limit": limit}
        if states:
            params["state"] = list(states)
        return [job_from_wire(j) for j in self._call("GET", "/jobs", params=params)]

    def events(self, job_id: str, *, limit: int = 20) -> builtins.list[EventView]:
        return [event_from_wire(e) for e in self._call("GET", f"/jobs/{_path(job_id)}/events", params={"limit": limit})]

    def snapshot(self, job: JobView) -> JobSnapshot:
        if job.snapshot is not None:
            return job.snapshot
        return snapshot_from_wire(self._call("GET", f"/jobs/{job.id}/status", params={"events": 0})["snapshot"])

    def best(self, job: JobView) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{job.id}/best"))

    def cancel(self, job_id: str) -> JobView:
        return job_from_wire(self._call("POST", f"/jobs/{_path(job_id)}/cancel"))

    def whoami(self) -> dict[str, Any]:
        return dict(self._call("GET", "/whoami"))

    # -- plumbing -------------------------------------------------------------------------

    def _upload(self, kind: str, sha256: str, content: bytes) -> None:
        """Upload a blob unless the server has it already (a rerun, or the same code as before)."""
        import httpx

        try:
            self._call("GET", f"/blobs/{sha256}")
            return
        except ServerError as exc:
            if exc.status != 404:
                raise
        self._call("PUT", f"/blobs/{kind}/{sha256}", content=content, timeout=httpx.Timeout(UPLOAD_TIMEOUT_S))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(f"the server {self.url} cannot be reached: {type(exc).__name__}: {exc}") from None
        if answer.is_success:
            return answer.json()
        raise _error_of(answer, self.url)


def _path(job_id: str) -> str:
    """A job id as a URL path segment: checked here as the store checks it, so a bad one is refused the same way."""
    from automl.store.records import check_job_id

    return check_job_id(job_id)


def _error_of(answer: httpx.Response, url: str) -> AutomlError:
    try:
        body = answer.json()
        message = str(body.get("error") or answer.reason_phrase)
    except ValueError:
        message = f"{answer.status_code} {answer.reason_phrase}"
    status = answer.status_code
    if status == 401:
        return ServerError(f"the server {url} refused the token: {message}", status=status)
    if status == 404 and body_kind(answer) == "JobNotFound":
        return JobNotFound(message)
    if status in (413, 422):
        return ServerInputError(message)
    if status == 503:
        return StoreUnavailable(message)
    return ServerError(message, status=status)


def body_kind(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("kind") or "")
    except ValueError:
        return ""
