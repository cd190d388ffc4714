"""A real ``automl server`` on loopback for a test: uvicorn serving the application in a thread, with
three users of the test's fresh job store: ``alice`` and ``bob`` (users) and ``root`` (an admin)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class LiveServer:
    url: str
    tokens: dict[str, str]
    store: object
    uvicorn_server: object = field(repr=False)
    thread: threading.Thread = field(repr=False)

    def env(self, user: str) -> dict[str, str]:
        """The environment a client of this server uses as ``user``."""
        return {"AUTOML_SERVER": self.url, "AUTOML_TOKEN": self.tokens[user]}

    def stop(self) -> None:
        self.uvicorn_server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(*, config_overrides: dict | None = None, log_level: str = "warning") -> LiveServer:
    """Start a server on the job store the environment names (the caller's ``automl_home``)."""
    import uvicorn

    from automl.server import create_app
    from automl.server.config import ServerConfig
    from automl.service import open_job_store
    from automl.settings import resolve_settings

    settings = resolve_settings()
    store = open_job_store(settings)
    tokens = {}
    for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
        store.users.add_user(name, role=role)
        tokens[name] = store.users.create_token(name)[1]
    config = ServerConfig(**{"auth_cache_s": 0.0, "notifier": False, **(config_overrides or {})})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, config), host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, name="automl-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("automl server did not start")
        time.sleep(0.05)
    return LiveServer(f"http://127.0.0.1:{port}", tokens, store, server, thread)


@pytest.fixture
def server(automl_home: Path) -> Iterator[LiveServer]:
    """A live server on the test's own state directory, with users alice, bob and root."""
    live = start_server()
    try:
        yield live
    finally:
        live.stop()
