"""``automl server``'s API against a live server on loopback: who may do what, what travels, what streams.

Every request goes over real HTTP to uvicorn; the job store is the test's own SQLite file, and the
jobs are moved through their states with the store's own operations (claim, progress, finish), as
a runner would, so no search runs here.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from automl.client import RemoteJobService
from automl.errors import InputError
from automl.service import check_job_file
from automl.store import JobNotFound
from automl.store.snapshot import JobSnapshot

SPEC = {
    "name": "api-job",
    "trainer": {"name": "mlp", "dataset": "iris"},
    "space": "mlp-small",
    "metric": "val_accuracy",
    "mode": "max",
    "budget": {"trials": 3, "max_epochs": 1},
}


def client(server: Any, user: str) -> RemoteJobService:
    return RemoteJobService(server.url, server.tokens[user])


def http(server: Any, user: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.tokens[user]}"} if user else {}
    return httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30)


def submit(server: Any, user: str, tmp_path: Path, **changes: Any) -> str:
    path = tmp_path / f"{user}-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return client(server, user).submit(check_job_file(path)).id


def test_no_token_a_bad_token_an_expired_or_revoked_one_and_a_disabled_user_get_401(server: Any) -> None:
    users = server.store.users
    _, expired = users.create_token("alice", expires_in=timedelta(microseconds=1))
    revoked_view, revoked = users.create_token("alice")
    users.revoke_token(revoked_view.id)
    _, carol = users.create_token(users.add_user("carol").name)
    users.set_disabled("carol", True)
    time.sleep(0.01)
    for token in (None, "aml_00000000_not-a-token", "Bearer", expired, revoked, carol):
        with httpx.Client(base_url=server.url, timeout=10) as raw:
            answer = raw.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"} if token else {})
        assert answer.status_code == 401, token
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "token" in answer.json()["error"] and (token is None or token == "Bearer" or token not in answer.text)
    with http(server, "alice") as alice:
        assert alice.get("/whoami").json() == {"name": "alice", "role": "user"}
    assert users.list_tokens("alice")[0].last_used_at is not None, "a token's use is recorded"
    # Only hashes are stored: no token's text is anywhere in the database.
    with server.store.engine.connect() as connection:
        dump = "\n".join(
            str(row)
            for table in ("automl_tokens", "automl_users")
            for row in connection.exec_driver_sql(f"SELECT * FROM {table}")
        )
    for secret in (*server.tokens.values(), expired, revoked, carol):
        assert secret not in dump and secret.split("_")[-1] not in dump


def test_a_user_sees_and_cancels_only_their_own_jobs_and_another_s_job_is_404(server: Any, tmp_path: Path) -> None:
    mine = submit(server, "alice", tmp_path)
    theirs = submit(server, "bob", tmp_path)
    alice, bob, root = client(server, "alice"), client(server, "bob"), client(server, "root")

    assert [j.id for j in alice.list()] == [mine] and [j.id for j in bob.list()] == [theirs]
    assert {j.id for j in root.list()} == {mine, theirs}, "an admin sees every job"
    assert alice.get(mine).owner == "alice"
    with http(server, "alice") as raw:
        for method, path in (
            ("GET", f"/jobs/{theirs}"),
            ("GET", f"/jobs/{theirs[:6]}"),  # a prefix of another's id: as if there were none
            ("GET", f"/jobs/{theirs}/status"),
            ("GET", f"/jobs/{theirs}/events"),
            ("GET", f"/jobs/{theirs}/best"),
            ("GET", f"/jobs/{theirs}/stream"),
            ("POST", f"/jobs/{theirs}/cancel"),
            ("POST", f"/jobs/{theirs}/rerun"),
        ):
            answer = raw.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["kind"] == "JobNotFound"
            # The same answer as for an id nobody has: nothing tells "exists, not yours" from "no such job".
            assert answer.json()["error"].replace(theirs[:6], "X").replace(theirs, "X") == raw.request(
                method, path.replace(theirs[:6], "ffff").replace(theirs, "ffffffffffff")
            ).json()["error"].replace("ffffffffffff", "X").replace("ffff", "X")
    with pytest.raises(JobNotFound):
        alice.cancel(theirs)
    assert server.store.get(theirs).state == "queued" and not server.store.get(theirs).cancel_requested
    assert root.cancel(theirs).state == "cancelled", "an admin cancels anyone's job"
    assert bob.get(theirs).state == "cancelled"
    assert alice.cancel(mine).state == "cancelled"


def test_warm_start_reads_only_the_caller_s_own_earlier_jobs(server: Any, tmp_path: Path) -> None:
    theirs = submit(server, "bob", tmp_path)
    study = server.store.get(theirs).study_name
    with pytest.raises(InputError, match=r"warm_start\.from_job: no job with id"):
        submit(server, "alice", tmp_path, warm_start={"from_job": theirs})
    with pytest.raises(InputError, match=r"warm_start\.from_study: no study"):
        submit(server, "alice", tmp_path, warm_start={"from_study": study})
    mine = submit(server, "alice", tmp_path)
    again = submit(server, "alice", tmp_path, warm_start={"from_job": mine})
    assert yaml.safe_load(server.store.get(again).spec_yaml)["warm_start"]["from_study"] == server.store.get(mine).study_name
    assert server.store.list(owner="alice")[0].id == again


def test_a_job_s_code_package_travels_through_the_server_once(server: Any, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("def objective(params):\n    return (params['x'] - 1) ** 2\n")
    (project / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "shipped",
                "objective": "train:objective",
                "metric": "loss",
                "mode": "min",
                "space": {"x": {"type": "float", "low": 0, "high": 2}},
                "budget": {"trials": 2},
            }
        )
    )
    checked = check_job_file(project / "job.yaml")
    assert checked.code is not None
    alice = client(server, "alice")
    first = alice.submit(checked)
    assert first.code_sha256 == checked.code.sha256
    assert server.store.blobs.get(checked.code.sha256) == checked.code.content
    second = alice.submit(checked)  # stored already: only the job is sent
    assert second.code_sha256 == first.code_sha256 and second.id != first.id
    with http(server, "alice") as raw:
        assert raw.get(f"/blobs/{checked.code.sha256}").json()["stored"] is True
        wrong = raw.put("/blobs/code/" + "0" * 64, content=b"not those bytes")
        assert wrong.status_code == 422 and "hash to" in wrong.json()["error"]
        missing = raw.post("/jobs", json={"plan_json": json.dumps({"spec": {**SPEC}}), "code_sha256": "1" * 64})
        assert missing.status_code == 422 and "not in the job store" in missing.json()["error"]


def test_the_stream_sends_a_job_s_progress_as_it_moves_and_ends(server: Any, tmp_path: Path) -> None:
    job_id = submit(server, "alice", tmp_path)
    store = server.store

    def run_it() -> None:
        time.sleep(0.5)
        store.claim("runner-1", lease_s=30, job_id=job_id)
        for finished in (1, 2, 3):
            time.sleep(0.4)
            store.record_progress(
                job_id,
                "runner-1",
                finished=finished,
                best_value=0.5 + finished / 10,
                snapshot=JobSnapshot(counts={"COMPLETE": finished}),
            )
        store.finish(job_id, "runner-1", "succeeded", message="best val_accuracy = 0.8")

    threading.Thread(target=run_it, daemon=True).start()
    seen: list[tuple[str, Any]] = []
    with http(server, "alice") as raw, raw.stream("GET", f"/jobs/{job_id}/stream", params={"every_s": 0.2}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in answer.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((event, json.loads(line.removeprefix("data: "))))
                if event == "end":
                    break
    progress = [data["trials_finished"] for kind, data in seen if kind == "job"]
    assert progress[0] == 0 and progress[-1] == 3 and progress == sorted(progress) and len(set(progress)) >= 3
    assert seen[-1] == ("end", {"state": "succeeded"})
    assert [e["kind"] for e in [d for k, d in seen if k == "events"][-1]][-1] == "succeeded"


def test_the_api_describes_itself_and_health_needs_no_token(server: Any) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as raw:
        schema = raw.get("/openapi.json").json()
        assert raw.get("/api/v1/health").json() == {"ok": True}
    paths = set(schema["paths"])
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}/status",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/stream",
        "/api/v1/blobs/{kind}/{sha256}",
    ):
        assert path in paths, path


def test_the_python_api_goes_through_the_server_when_one_is_named_and_to_the_local_store_when_not(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import automl

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    for name, value in server.env("bob").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTOML_HOME", str(tmp_path / "bob-home"))  # bob's machine: no store of its own is opened
    job = automl.submit(path)
    assert job.owner == "bob" and [j.id for j in automl.jobs()] == [job.id]
    seen = automl.status(job.id[:6])
    assert seen.job.id == job.id and seen.snapshot.counts == {} and [e.kind for e in seen.events] == ["submitted"]
    assert automl.cancel(job.id).state == "cancelled"
    assert automl.best(job.id)["best_value"] is None
    assert not (tmp_path / "bob-home").exists()
    with pytest.raises(JobNotFound):
        automl.status(job.id, service=automl.connect(server.url, server.tokens["alice"]))

    monkeypatch.delenv("AUTOML_SERVER")
    monkeypatch.delenv("AUTOML_TOKEN")
    local = automl.submit(path)  # the embedded default: this machine's own job store
    assert local.owner is None and [j.id for j in automl.jobs()] == [local.id]
    assert (tmp_path / "bob-home" / "jobs.db").exists()


def test_no_token_reaches_the_server_s_log_even_at_debug(
    automl_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from server_fixture import start_server

    caplog.set_level(logging.DEBUG)
    live = start_server(log_level="debug")
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):  # uvicorn's loggers do not propagate
        logging.getLogger(name).addHandler(caplog.handler)
    try:
        submit(live, "alice", tmp_path)
        with httpx.Client(base_url=live.url, timeout=10) as raw:
            for token in (live.tokens["alice"], live.tokens["bob"] + "x", "aml_deadbeef_wrong"):
                raw.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
                raw.get("/api/v1/jobs", cookies={"automl_token": token})
                raw.post("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}, content=b"{not json")
    finally:
        live.stop()
        for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).removeHandler(caplog.handler)
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert "GET /api/v1/jobs" in logged, "the access log was captured"
    for secret in (*live.tokens.values(), "aml_deadbeef_wrong"):
        assert secret not in logged and secret.split("_")[-1][:20] not in logged
