"""The job endpoints of ``automl server`` (``/api/v1``): everything the CLI does, for the caller's own jobs.

What must stay true: every endpoint but ``/health`` needs a live token; each answers through a
:class:`~automl.service.job_service.LocalJobService` made for the caller, which alone decides what
they may see (another user's job is 404, as if it did not exist; admins see all); the bodies are
:mod:`automl.service.wire`'s, so a client rebuilds exactly what the store handed out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from automl.server.auth import current_user
from automl.service.job_service import LocalJobService
from automl.service.wire import event_to_wire, job_to_wire, snapshot_to_wire
from automl.states import JobState

if TYPE_CHECKING:
    from automl.store.users import UserView

router = APIRouter(prefix="/api/v1")
User = Annotated["UserView", Depends(current_user)]
SHA256 = re.compile(r"[0-9a-f]{64}")
BLOB_KINDS = ("code", "data")


class JobFormBody(BaseModel):
    """A job to queue: the plan ``automl submit`` checked it into, and the hashes of its uploaded blobs."""

    plan_json: str = Field(min_length=2, description="the checked plan (automl.engine.plan.plan_to_json)")
    base_dir: str | None = Field(default=None, max_length=4096)
    code_sha256: str | None = Field(default=None, pattern=SHA256.pattern)
    data_sha256: str | None = Field(default=None, pattern=SHA256.pattern)
    data_source: str | None = Field(default=None, max_length=4096)


def service_for(request: Request, user: UserView) -> LocalJobService:
    state = request.app.state
    return LocalJobService(state.store, state.settings, user=user.name, sees_all=user.is_admin)


@router.get("/health", tags=["server"])
def health(request: Request) -> dict[str, Any]:
    """Whether the server is up and reaches its job store (no token needed: for load balancers)."""
    request.app.state.store.list(limit=1)
    return {"ok": True}


@router.get("/whoami", tags=["server"])
def whoami(user: User) -> dict[str, Any]:
    """The caller's user name and role."""
    return {"name": user.name, "role": user.role}


@router.get("/blobs/{sha256}", tags=["jobs"])
def has_blob(sha256: str, request: Request, user: User) -> dict[str, Any]:
    """Whether a code package or data file with this sha256 is stored (upload only what is not)."""
    _check_sha(sha256)
    if not request.app.state.store.blobs.has(sha256):
        raise HTTPException(404, f"no blob {sha256[:12]} is stored; upload it with PUT /api/v1/blobs/KIND/SHA256")
    return {"sha256": sha256, "stored": True}


@router.put("/blobs/{kind}/{sha256}", status_code=201, tags=["jobs"])
async def put_blob(kind: str, sha256: str, request: Request, user: User) -> dict[str, Any]:
    """Upload a job's code package (``code``) or data file (``data``), named by the sha256 of its bytes."""
    _check_sha(sha256)
    if kind not in BLOB_KINDS:
        raise HTTPException(422, f"blob kind {kind[:20]!r}: one of {', '.join(BLOB_KINDS)}")
    limit = request.app.state.blob_limits[kind]
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the {kind} upload is over the limit of {limit / 2**20:g} MB")
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the {kind} upload is over the limit of {limit / 2**20:g} MB")
        digest.update(chunk)
        chunks.append(chunk)
    if digest.hexdigest() != sha256:
        raise HTTPException(422, f"the uploaded bytes hash to {digest.hexdigest()[:12]}, not {sha256[:12]}: upload again")
    await run_in_threadpool(request.app.state.store.blobs.put, kind, b"".join(chunks))
    return {"sha256": sha256, "size": size}


@router.post("/jobs", status_code=201, tags=["jobs"])
def submit(body: JobFormBody, request: Request, user: User) -> dict[str, Any]:
    """Queue a job for the caller."""
    from automl.service.submit import JobForm

    form = JobForm(body.plan_json, body.base_dir, body.code_sha256, body.data_sha256, body.data_source)
    return job_to_wire(service_for(request, user).submit_form(form))


@router.get("/jobs", tags=["jobs"])
def list_jobs(
    request: Request,
    user: User,
    state: Annotated[list[JobState] | None, Query(description="only jobs in these states")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    """The caller's jobs (an admin's: everyone's), newest first."""
    states = tuple(str(s) for s in state) if state else None
    return [job_to_wire(j) for j in service_for(request, user).list(states=states, limit=limit)]


@router.get("/jobs/{job_id}", tags=["jobs"])
def get_job(job_id: str, request: Request, user: User) -> dict[str, Any]:
    """A job (a unique prefix of its id of 4 or more characters is enough)."""
    return job_to_wire(service_for(request, user).get(job_id))


@router.get("/jobs/{job_id}/status", tags=["jobs"])
def job_status(job_id: str, request: Request, user: User, events: Annotated[int, Query(ge=0, le=1000)] = 10) -> dict[str, Any]:
    """A job with its progress snapshot (trial counts, top trials, Pareto front) and latest events."""
    service = service_for(request, user)
    job = service.get(job_id)
    return {
        "job": job_to_wire(job),
        "snapshot": snapshot_to_wire(service.snapshot(job)),
        "events": [event_to_wire(e) for e in service.store.events(job.id, limit=events)],
    }


@router.get("/jobs/{job_id}/events", tags=["jobs"])
def job_events(
    job_id: str, request: Request, user: User, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> list[dict[str, Any]]:
    """A job's latest events, oldest first."""
    return [event_to_wire(e) for e in service_for(request, user).events(job_id, limit=limit)]


@router.get("/jobs/{job_id}/best", tags=["jobs"])
def job_best(job_id: str, request: Request, user: User) -> dict[str, Any]:
    """The best trial: value, hyperparameters, MLflow run and registered model."""
    service = service_for(request, user)
    return json.loads(json.dumps(service.best(service.get(job_id)), default=str))


@router.post("/jobs/{job_id}/cancel", tags=["jobs"])
def cancel(job_id: str, request: Request, user: User) -> dict[str, Any]:
    """Cancel a job: a queued one leaves the queue; a running one's trials stop within seconds."""
    return job_to_wire(service_for(request, user).cancel(job_id))


@router.post("/jobs/{job_id}/rerun", status_code=201, tags=["jobs"])
def rerun(job_id: str, request: Request, user: User) -> dict[str, Any]:
    """Queue a job again as a new job: the same spec, code package and data file."""
    service = service_for(request, user)
    earlier = service.get(job_id)
    job, notes = service.rerun(earlier.id)
    return {"job": job_to_wire(job), "rerun_of": earlier.id, "notes": notes}


@router.get("/jobs/{job_id}/stream", tags=["jobs"])
async def stream(
    job_id: str, request: Request, user: User, every_s: Annotated[float, Query(ge=0.2, le=30)] = 1.0
) -> StreamingResponse:
    """Server-sent events of a job's progress: ``job`` (the job, when it changed), ``events`` (its
    latest events, when new ones came), and ``end`` when it is final. A comment every 15 s keeps
    proxies from closing the stream."""
    service = service_for(request, user)
    job = await run_in_threadpool(service.get, job_id)

    async def messages() -> AsyncIterator[str]:
        last_job: dict[str, Any] | None = None
        last_events: list[dict[str, Any]] | None = None
        quiet = 0.0
        while True:
            current = await run_in_threadpool(service.get, job.id)
            wire = job_to_wire(current)
            if wire != last_job:
                last_job = wire
                yield _sse("job", wire)
                quiet = 0.0
            events = [event_to_wire(e) for e in await run_in_threadpool(service.store.events, job.id, limit=20)]
            if events != last_events:
                last_events = events
                yield _sse("events", events)
            if current.is_final:
                yield _sse("end", {"state": current.state})
                return
            if quiet >= 15:
                yield ": keep-alive\n\n"
                quiet = 0.0
            if await request.is_disconnected():
                return
            await asyncio.sleep(every_s)
            quiet += every_s

    # X-Accel-Buffering: nginx, in front, passes each message on at once instead of holding them in its buffer.
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(messages(), media_type="text/event-stream", headers=headers)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def _check_sha(sha256: str) -> None:
    if not SHA256.fullmatch(sha256):
        raise HTTPException(422, f"{sha256[:70]!r} is not a sha256: 64 lower-case hex digits")
