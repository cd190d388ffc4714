"""How a job, its events and its snapshot travel as JSON between ``automl server`` and its clients.

What must stay true: ``job_from_wire(job_to_wire(view)) == view`` for every view (a client builds
the same :class:`JobView` the store would have handed out, so the CLI prints the same either way);
times travel as ISO-8601 UTC with a ``Z``; nothing here imports a heavy library.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from automl.store.records import EventView, JobView
from automl.store.snapshot import JobSnapshot

_TIMES = ("created_at", "updated_at", "started_at", "finished_at", "lease_expires_at")


def _time_out(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat() + "Z"


def _time_in(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.removesuffix("Z"))


def job_to_wire(job: JobView) -> dict[str, Any]:
    """Every field of a job, its snapshot as the JSON object it is stored as."""
    data: dict[str, Any] = {name: getattr(job, name) for name in JobView.__dataclass_fields__ if name != "snapshot"}
    for name in _TIMES:
        data[name] = _time_out(data[name])
    data["snapshot"] = None if job.snapshot is None else snapshot_to_wire(job.snapshot)
    return data


def job_from_wire(data: dict[str, Any]) -> JobView:
    fields: dict[str, Any] = {name: data.get(name) for name in JobView.__dataclass_fields__ if name != "snapshot"}
    for name in _TIMES:
        fields[name] = _time_in(fields[name])
    snapshot = data.get("snapshot")
    return JobView(**fields, snapshot=None if snapshot is None else snapshot_from_wire(snapshot))


def snapshot_to_wire(snapshot: JobSnapshot) -> dict[str, Any]:
    import json

    return dict(json.loads(snapshot.to_json()))


def snapshot_from_wire(data: dict[str, Any]) -> JobSnapshot:
    import json

    found = JobSnapshot.from_json(json.dumps(data))
    assert found is not None
    return found


def event_to_wire(event: EventView) -> dict[str, Any]:
    return {
        "job_id": event.job_id,
        "at": _time_out(event.at),
        "kind": event.kind,
        "message": event.message,
        "runner_id": event.runner_id,
    }


def event_from_wire(data: dict[str, Any]) -> EventView:
    at = _time_in(data["at"])
    assert at is not None
    return EventView(data["job_id"], at, data["kind"], data["message"], data.get("runner_id"))
