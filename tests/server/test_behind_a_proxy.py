"""What running ``automl server`` behind a load balancer relies on (docs/production.md): two servers on
one job store answer alike, since neither keeps state of its own; a revoked token stops working on the
other within its ``auth_cache_s``; the health check needs no token; the event stream tells a proxy
not to buffer it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from server_fixture import LiveServer, free_port

CACHE_S = 1.0


@dataclass
class Other:
    """A second server on the same job store, as a load balancer's second backend."""

    url: str
    uvicorn_server: object
    thread: threading.Thread


@pytest.fixture
def other(server: LiveServer) -> Iterator[Other]:
    import uvicorn

    from automl.server import create_app
    from automl.server.config import ServerConfig
    from automl.settings import resolve_settings

    app = create_app(resolve_settings(), ServerConfig(auth_cache_s=CACHE_S, notifier=False))
    port = free_port()
    backend = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=backend.run, name="automl-server-2", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not backend.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the second server did not start"
        time.sleep(0.05)
    yield Other(f"http://127.0.0.1:{port}", backend, thread)
    backend.should_exit = True
    thread.join(timeout=10)


def client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_two_servers_on_one_store_answer_alike(server: LiveServer, other: Other, automl_home: Path) -> None:
    job = server.store.submit(name="shared", spec_yaml="name: shared\n", trials_total=3, owner="alice")  # type: ignore[attr-defined]
    with client(server.url, server.tokens["alice"]) as a, client(other.url, server.tokens["alice"]) as b:
        assert a.get(f"/jobs/{job.id}").json() == b.get(f"/jobs/{job.id}").json()
        assert b.post(f"/jobs/{job.id}/cancel").json()["state"] == "cancelled"  # through one...
        assert a.get(f"/jobs/{job.id}").json()["state"] == "cancelled"  # ...seen through the other at once
        assert [j["id"] for j in a.get("/jobs").json()] == [j["id"] for j in b.get("/jobs").json()] == [job.id]
    with client(other.url, server.tokens["bob"]) as bob:
        assert bob.get(f"/jobs/{job.id}").status_code == 404  # the same rules on every server


def test_a_revoked_token_stops_working_on_every_server_within_the_cache_time(server: LiveServer, other: Other) -> None:
    token = server.tokens["alice"]
    with client(other.url, token) as b:
        assert b.get("/whoami").status_code == 200  # checked, now cached on the second server
        token_id = token.split("_")[1]
        server.store.users.revoke_token(token_id)  # type: ignore[attr-defined]
        revoked_at = time.monotonic()
        while b.get("/whoami").status_code == 200:
            assert time.monotonic() - revoked_at < CACHE_S + 1.0, "the revoked token still works after auth_cache_s"
            time.sleep(0.05)
        assert b.get("/whoami").status_code == 401
    with client(server.url, token) as a:
        assert a.get("/whoami").status_code == 401  # the first server caches nothing here (auth_cache_s 0)


def test_health_needs_no_token_and_the_stream_asks_a_proxy_not_to_buffer(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as raw:
        health = raw.get("/api/v1/health")
        assert health.status_code == 200 and health.json() == {"ok": True}
    job = server.store.submit(name="streamed", spec_yaml="name: streamed\n", trials_total=1, owner="alice")  # type: ignore[attr-defined]
    server.store.cancel(job.id)  # type: ignore[attr-defined]  # final: the stream sends it and ends
    with client(server.url, server.tokens["alice"]) as a, a.stream("GET", f"/jobs/{job.id}/stream") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["x-accel-buffering"] == "no" and answer.headers["cache-control"] == "no-store"
        events = [line for line in answer.iter_lines() if line.startswith("event: ")]
    assert events[0] == "event: job" and events[-1] == "event: end"
