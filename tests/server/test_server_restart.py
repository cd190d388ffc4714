"""``automl server`` killed and restarted while a runner keeps running its job (issue 17, "Production").

Real processes on one PostgreSQL job store: ``automl server`` and ``automl worker`` as subprocesses,
and the user's CLI with only ``AUTOML_SERVER`` and ``AUTOML_TOKEN`` (no database URL). The job is
submitted through the server, its code package uploaded with it; the server is SIGKILLed while the
job runs; a client call meanwhile fails with one line and exit 1; a new server on the same port
lists the job, its status and its best trial once the runner, which never needed the server, has
finished every trial.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

TRIALS = 4
OBJECTIVE = """
import time

def objective(params, ctx):
    for step in range(1, ctx.max_epochs + 1):
        time.sleep(0.3)
        ctx.report(loss=(params["x"] - 0.3) ** 2 + 1.0 / step, step=step)
"""
SERVICE_ENV = ("AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "AUTOML_HOME", "AUTOML_TRIAL_STORAGE")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs()}")


@dataclass
class Deployment:
    """A server and a runner on one job store, and a user's shell that holds only a token."""

    root: Path
    service_env: dict[str, str]  # what the server and the runner hold: the store's URLs
    user_env: dict[str, str] = field(default_factory=dict)  # what the user holds: the server's URL and a token
    port: int = 0
    server: subprocess.Popen | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(self.root / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "automl.cli", *args],
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start_server(self) -> None:
        self.starts += 1
        env = {**self.service_env, "AUTOML_SERVER_PORT": str(self.port), "AUTOML_SERVER_AUTH_CACHE_S": "0"}
        self.server = self.spawn("server", ["server"], env)
        wait_for(self.healthy, 60, f"automl server (start {self.starts}) to answer /api/v1/health", lambda: self.log("server"))

    def healthy(self) -> bool:
        assert self.server is not None
        if self.server.poll() is not None:
            raise AssertionError(f"automl server exited with {self.server.returncode}:\n{self.log('server')}")
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def kill_server(self) -> None:
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait(timeout=10)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """The user's ``automl`` command: it knows the server and a token, not the database."""
        return subprocess.run(
            [sys.executable, "-m", "automl.cli", *args],
            env=self.user_env,
            cwd=self.root / "project",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_json(self, *args: str) -> object:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, f"automl {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str, ray_session: None) -> Iterator[Deployment]:
    """The job store on PostgreSQL with a user and their token; the server, and a runner driving this
    session's Ray (as runners drive a cluster: seconds saved), started."""
    import ray

    from automl.store import open_store

    base = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV and not k.startswith("AUTOML_SERVER")}
    service = {
        **base,
        "AUTOML_HOME": str(tmp_path / "service-home"),  # MLflow's SQLite file and unpacked code: the server's and runner's
        "AUTOML_DB_URL": postgres_url,
        "AUTOML_STORAGE_URL": postgres_url,
    }
    store = open_store(postgres_url)
    store.users.add_user("alice", role="user")
    token = store.users.create_token("alice")[1]
    store.engine.dispose()

    project = tmp_path / "project"
    project.mkdir()
    (project / "slow_objective.py").write_text(OBJECTIVE)
    (project / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "through-a-restart",
                "objective": "slow_objective:objective",
                "space": {"x": {"type": "float", "low": 0, "high": 1}},
                "metric": "loss",
                "mode": "min",
                "scheduler": {"name": "fifo"},
                "budget": {"trials": TRIALS, "max_epochs": 3},
                "resources": {"max_concurrent": 2},
                "seed": 3,
            }
        )
    )
    user = {**base, "AUTOML_HOME": str(tmp_path / "user-home"), "AUTOML_SERVER": "", "AUTOML_TOKEN": token}
    deploy = Deployment(tmp_path, service, user, port=free_port())
    deploy.user_env["AUTOML_SERVER"] = deploy.url
    try:
        deploy.start_server()
        runner_env = {**service, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        deploy.spawn("runner", ["worker", "--poll", "0.3"], runner_env)
        yield deploy
    finally:
        deploy.stop()


def test_a_job_finishes_through_a_server_killed_and_restarted_while_it_runs(deployment: Deployment) -> None:
    from automl.store import open_store

    d = deployment
    submitted = d.cli("submit", "job.yaml", "--json")
    assert submitted.returncode == 0, f"automl submit exited {submitted.returncode}: {submitted.stderr}\n{d.log('server')}"
    job_id = json.loads(submitted.stdout)["id"]

    store = open_store(d.service_env["AUTOML_DB_URL"])  # the test's own look at the store, never the user's
    try:

        def running() -> bool:
            job = store.get(job_id)
            assert not job.is_final, f"the job ended before the server was killed: {job.state} {job.error}\n{d.log('runner')}"
            return job.state == "running"

        wait_for(running, 60, "a runner to claim the job", lambda: d.log("runner"))
        d.kill_server()

        # The outage, as the user sees it: one line naming the server, exit 1, no traceback.
        down = d.cli("status", job_id)
        assert down.returncode == 1, (down.returncode, down.stdout, down.stderr)
        lines = down.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: the server http://127.0.0.1:"), down.stderr
        assert "cannot be reached" in lines[0] and "Traceback" not in down.stderr, down.stderr
        assert d.user_env["AUTOML_TOKEN"] not in down.stderr + down.stdout

        # Meanwhile the runner goes on: it talks to the job store, never to the server.
        wait_for(
            lambda: store.get(job_id).trials_finished >= 1,
            90,
            "the runner to finish a trial while the server is down",
            lambda: d.log("runner"),
        )
        d.start_server()  # the same port: clients keep their AUTOML_SERVER
        wait_for(lambda: store.get(job_id).is_final, 120, "the job to end", lambda: d.log("runner"))
    finally:
        store.engine.dispose()

    listed = d.cli_json("list")
    assert isinstance(listed, list) and [j["id"] for j in listed] == [job_id], listed
    status = d.cli_json("status", job_id)
    assert isinstance(status, dict)
    job = status["job"]
    assert job["state"] == "succeeded", status
    assert job["trials_finished"] == TRIALS and job["trial_states"] == {"COMPLETE": TRIALS}, status
    assert len(status["top_trials"]) == TRIALS and [e["kind"] for e in status["events"]][-1] == "succeeded", status
    best = d.cli_json("best", job_id)
    assert isinstance(best, dict) and best["best_value"] is not None and set(best["best_params"]) == {"x"}, best
    assert best["best_trial"] in range(TRIALS), best
    # The user's shell never opened a job store of its own.
    assert not list(Path(d.user_env["AUTOML_HOME"]).glob("*.db")), list(Path(d.user_env["AUTOML_HOME"]).iterdir())
    assert d.starts == 2
