"""The production topology end to end, as local processes on loopback: a real PostgreSQL server, the
MLflow tracking server on it started by ``mlflow/start-server.sh``, a two-node Ray cluster started by
``workers/cluster/start-head.sh`` and ``start-worker.sh``, a runner (``automl worker``), and
``automl server`` started by ``workers/cluster/start-server.sh``, with a user and a token made by
``automl admin``. A job submitted with ``automl submit`` through the server (the user's shell holds
only its URL and the token) completes on the cluster; its runs are read back over MLflow's REST API and
with the Python client, and the best model is loaded from the registry through the MLflow server.

The scripts are the ones ``docker/compose.yaml`` runs in its containers, with the same variables.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/raycluster.py
import raycluster  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the environment's `ray`, `automl` and `python3`
TRIALS = 4
JOB_NAME = "topology-iris"
MODEL_NAME = "topology-iris-model"
EXPERIMENT = "topology"
HYPERPARAMETERS = {"learning_rate", "batch_size", "dropout", "l1", "l2"}
START_TIMEOUT_S = 120
USER = "topology-user"


def base_env(**extra: str) -> dict[str, str]:
    """This environment minus the service's own variables, with this venv's scripts first on PATH."""
    drop = {
        "AUTOML_DB_URL",
        "AUTOML_STORAGE_URL",
        "MLFLOW_TRACKING_URI",
        "AUTOML_HOME",
        "AUTOML_SPACES_PATH",
        *raycluster.AUTH_ENV,
        *raycluster.FOREIGN_ENV,
    }
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class ScriptCluster(raycluster.RayCluster):
    """tests/raycluster.py's two-node cluster, but each node started by the workers/cluster/ scripts."""

    automl_home: Path | None = None

    def script_env(self, variables: dict[str, str], base: dict[str, str] | None = None) -> dict[str, str]:
        """What a node's script gets: the cluster's auth, this venv's commands, the shared AUTOML_HOME."""
        env = self.driver_env(base)
        del env["RAY_ADDRESS"]
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            AUTOML_PYTHON=sys.executable,
            RAY_COMMAND=self.ray,
            AUTOML_HOME=str(self.automl_home),
            RAY_NODE_IP="127.0.0.1",
            **variables,
        )
        return env

    def _spawn_script(self, node: str, variables: dict[str, str]) -> subprocess.Popen:
        script = REPO / "workers" / "cluster" / f"start-{node}.sh"
        env = self.script_env(variables)
        with open(self.log_file(node), "ab") as log:
            return subprocess.Popen(
                ["bash", str(script)],
                cwd=self.base_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def launch(self) -> None:
        """Start both nodes without waiting: the worker node retries the head until it is up."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.token_path.write_text(os.urandom(32).hex())
        self.token_path.chmod(0o600)
        common = {"RAY_NUM_CPUS": "1", "RAY_NUM_GPUS": "0", "RAY_OBJECT_STORE_MEMORY": str(raycluster.OBJECT_STORE_BYTES)}
        self.head = self._spawn_script("head", {**common, "RAY_PORT": str(self.port), "RAY_TEMP_DIR": str(self.temp_dir)})
        self.worker = self._spawn_script("worker", {**common, "RAY_HEAD_ADDRESS": self.address})

    def wait_ready(self, timeout: float) -> None:
        nodes = self._wait_for_nodes(raycluster.NODES, timeout, watch=("head", "worker"))
        heads = [n["id"] for n in nodes if n["head"]]
        others = [n["id"] for n in nodes if not n["head"]]
        if len(heads) != 1 or len(others) != 1:
            raise raycluster.RayClusterError(f"expected a head and a worker node, the cluster shows {nodes}\n{self.logs()}")
        self.head_node_id, self.worker_node_id = heads[0], others[0]


@dataclass
class MlflowServer:
    """``mlflow/start-server.sh`` as a subprocess in its own session."""

    process: subprocess.Popen
    url: str
    log: Path
    artifacts: Path
    env: dict[str, str]

    def wait_healthy(self, timeout: float) -> None:
        """Until /health answers, then ``mlflow/healthcheck.sh`` (compose's health check) must pass too."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"mlflow/start-server.sh exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:  # refused while it starts; URLError is an OSError
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the MLflow server at {self.url} was not healthy within {timeout:.0f}s:\n{self.tail()}")
            time.sleep(0.3)
        check = subprocess.run(
            ["bash", str(REPO / "mlflow" / "healthcheck.sh")],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, f"mlflow/healthcheck.sh failed on a healthy server:\n{check.stdout}{check.stderr}"

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGKILL the server's session (its state is in the database, dropped next) and wait for it to go."""
        stop_session(self.process)


def stop_session(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session`` and everything in its session; reap it."""
    raycluster._kill_session(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and raycluster._session_pids(process.pid):
        time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@dataclass
class Topology:
    root: Path
    env: dict[str, str]  # what a user's shell has: automl server's URL and a token (AUTOML_SERVER, AUTOML_TOKEN)
    mlflow: MlflowServer
    cluster: ScriptCluster
    job_id: str
    submitted: dict
    runner_log: Path
    shared_home: Path  # the runner's and the Ray nodes' AUTOML_HOME (checkpoints)
    job_store_url: str

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "automl"), *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rest(self, method: str, path: str, payload: dict | None = None, **query: str) -> dict:
        """One call to MLflow's REST API, plain HTTP as any client would."""
        url = f"{self.mlflow.url}/api/2.0/mlflow/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def start_mlflow(root: Path, backend_url: str) -> MlflowServer:
    port = raycluster.free_port()
    artifacts = root / "mlflow-artifacts"
    log = root / "mlflow.log"
    env = base_env(
        MLFLOW_BACKEND_STORE_URI=backend_url,
        MLFLOW_ARTIFACTS_DESTINATION=str(artifacts),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_WORKERS="1",  # two cores, shared
        MLFLOW_PYTHON=sys.executable,
    )
    with open(log, "ab") as out:
        process = subprocess.Popen(
            ["bash", str(REPO / "mlflow" / "start-server.sh")],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return MlflowServer(process, f"http://127.0.0.1:{port}", log, artifacts, env)


def start_server(root: Path, service: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str], Path]:
    """``workers/cluster/start-server.sh`` with what compose gives it (the runner's URLs), on loopback."""
    env = base_env(
        **service,
        AUTOML_HOME=str(root / "server-home"),  # its own: the server keeps nothing there
        AUTOML_SERVER_HOST="127.0.0.1",  # compose: 0.0.0.0 inside its container
        AUTOML_SERVER_PORT=str(raycluster.free_port()),
        AUTOML_SERVER_WORKERS="1",  # two cores, shared
        AUTOML_COMMAND=str(BIN / "automl"),
        AUTOML_PYTHON=sys.executable,
    )
    log = root / "server.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            ["bash", str(REPO / "workers" / "cluster" / "start-server.sh")],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, env, log


def operator_setup(
    root: Path, service: dict[str, str], migrated: threading.Event
) -> tuple[str, subprocess.Popen, dict[str, str], Path]:
    """What an operator does on the server's machine: ``automl admin user add``, ``automl admin token
    create`` (its secret printed once), then the server. The first command migrates the job store (then
    ``migrated`` is set: nothing else may open it before, or two would create its tables at once)."""
    admin_env = base_env(AUTOML_HOME=str(root / "admin-home"), **service)
    for command in (["user", "add", USER], ["token", "create", USER, "--label", "topology", "--json"]):
        done = subprocess.run(
            [str(BIN / "automl"), "admin", *command], env=admin_env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"automl admin {' '.join(command)} exited {done.returncode}: {done.stderr}"
        migrated.set()
    token = json.loads(done.stdout)["token"]
    return token, *start_server(root, service)


def wait_server_healthy(process: subprocess.Popen, env: dict[str, str], log: Path, timeout: float) -> None:
    """Until ``healthcheck.sh server`` (compose's health check of the server) passes."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"start-server.sh exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        check = subprocess.run(
            ["bash", str(REPO / "workers" / "cluster" / "healthcheck.sh"), "server"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"automl server not healthy within {timeout:.0f}s: {check.stderr[-500:]}\n{log.read_text()}")
        time.sleep(0.3)


def job_spec() -> dict:
    return {
        "name": JOB_NAME,
        "trainer": {"name": "mlp", "dataset": "iris"},
        "space": "mlp-small",
        "metric": "val_accuracy",
        "mode": "max",
        "scheduler": {"name": "fifo"},
        "budget": {"trials": TRIALS, "max_epochs": 4},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "seed": 5,
        "tracking": {"experiment": EXPERIMENT, "model_name": MODEL_NAME},
    }


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, postgres_server) -> Iterator[Topology]:
    """Everything up, one job submitted through the CLI and finished; torn down after the module."""
    root = tmp_path_factory.mktemp("topology")
    home = root / "automl-home"  # the shared state directory (checkpoints): same path on every node
    names = ("topology_jobs", "topology_mlflow")  # MLflow in a database of its own (alembic_version clash)
    for name in names:
        postgres_server.new_database(name)
    plain = f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}"

    mlflow_server = start_mlflow(root, f"{plain}/topology_mlflow")
    cluster = ScriptCluster(
        base_dir=Path(tempfile.mkdtemp(prefix="rayt-", dir="/tmp")), port=raycluster.free_port(), ray=raycluster.ray_executable()
    )
    cluster.automl_home = home
    runner = None
    # What the runner and the server hold (compose's x-service-env).
    service = {
        "AUTOML_DB_URL": f"{plain}/topology_jobs",
        "AUTOML_STORAGE_URL": f"{plain}/topology_jobs",
        "MLFLOW_TRACKING_URI": mlflow_server.url,
    }
    migrated = threading.Event()
    operator = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    started: concurrent.futures.Future | None = None
    try:
        cluster.launch()
        # While Ray and MLflow start: the operator makes a user and a token, then starts the server.
        started = operator.submit(operator_setup, root, service, migrated)
        cluster.wait_ready(START_TIMEOUT_S)
        # The runner's Ray node joins, and compose's health check of the head runs, while MLflow makes its
        # tables; the job is submitted once MLflow and the server are healthy.
        while not migrated.wait(0.2):  # the runner opens a migrated store
            if started.done():
                started.result()  # raises what stopped the operator
        runner_log = root / "runner.log"
        runner_env = cluster.script_env(
            {
                **service,
                "RAY_HEAD_ADDRESS": cluster.address,
                "AUTOML_COMMAND": str(BIN / "automl"),
                "RAY_OBJECT_STORE_MEMORY": str(raycluster.OBJECT_STORE_BYTES),
            },
            base_env(),
        )
        with open(runner_log, "ab") as out:
            runner = subprocess.Popen(
                ["bash", str(REPO / "workers" / "cluster" / "start-runner.sh"), "--poll", "0.3"],
                cwd=root,
                env=runner_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        head_check = subprocess.Popen(
            ["bash", str(REPO / "workers" / "cluster" / "healthcheck.sh"), "head"],
            env=cluster.script_env({"RAY_PORT": str(cluster.port)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        mlflow_server.wait_healthy(START_TIMEOUT_S)
        token, server, server_env, server_log = started.result(timeout=START_TIMEOUT_S)
        wait_server_healthy(server, server_env, server_log, START_TIMEOUT_S)
        # What a user's shell has: the server's URL and a token; no database URL, no Ray auth.
        server_url = f"http://{server_env['AUTOML_SERVER_HOST']}:{server_env['AUTOML_SERVER_PORT']}"
        env = base_env(AUTOML_HOME=str(root / "user-home"), AUTOML_SERVER=server_url, AUTOML_TOKEN=token)
        head_output, _ = head_check.communicate(timeout=120)
        assert head_check.returncode == 0, f"workers/cluster/healthcheck.sh head failed:\n{head_output}"
        assert runner.poll() is None, (
            f"start-runner.sh exited with {runner.returncode}:\n{runner_log.read_text(errors='replace')}"
        )

        spec = root / "job.yaml"
        spec.write_text(yaml.safe_dump(job_spec()))
        topo = Topology(root, env, mlflow_server, cluster, "", {}, runner_log, home, service["AUTOML_DB_URL"])
        submitted = topo.cli("submit", str(spec), "--wait", "--json", timeout=240)
        assert submitted.returncode == 0, (
            f"automl submit --wait exited {submitted.returncode}\nstdout:\n{submitted.stdout}\nstderr:\n{submitted.stderr[-3000:]}"
            f"\nrunner log:\n{runner_log.read_text(errors='replace')[-4000:]}\nmlflow log:\n{mlflow_server.tail()}"
            f"\nserver log:\n{server_log.read_text(errors='replace')[-3000:]}"
        )
        topo.submitted = json.loads(submitted.stdout)
        topo.job_id = topo.submitted["id"]

        yield topo
    finally:
        # Nothing needs a graceful stop: the job is over and every store is thrown away.
        if runner is not None:
            stop_session(runner)  # the runner and its own Ray node
        operator.shutdown(wait=True)
        if started is not None and started.done() and started.exception() is None:
            stop_session(started.result()[1])
        mlflow_server.stop()
        cluster.stop()
        for name in names:
            with contextlib.suppress(Exception):  # tidiness only; the server goes at the end of the run
                postgres_server.drop_database(name)


def test_job_submitted_through_the_cli_succeeds_on_the_cluster(topology: Topology) -> None:
    job = topology.submitted
    assert job["state"] == "succeeded", job
    assert job["trials_finished"] == TRIALS and job["trial_states"] == {"COMPLETE": TRIALS}, job
    assert job["mlflow_run_id"] and job["experiment_id"], job
    # The job's rows and the study are in PostgreSQL, not in SQLite files under AUTOML_HOME; the
    # shared state directory holds the trials' checkpoints.
    home = topology.shared_home
    assert not list(home.glob("*.db")), f"embedded databases were written: {list(home.glob('*.db'))}"
    # It went through the server, as the user whose token the shell holds; that shell opened no store.
    assert set(topology.env) >= {"AUTOML_SERVER", "AUTOML_TOKEN"} and "AUTOML_DB_URL" not in topology.env
    user_home = Path(topology.env["AUTOML_HOME"])
    assert not (user_home.exists() and list(user_home.glob("*.db"))), list(user_home.glob("*.db"))
    from automl.store import open_store

    store = open_store(topology.job_store_url)
    try:
        assert store.get(topology.job_id).owner == USER
    finally:
        store.engine.dispose()
    assert list((home / "ray_results").rglob("checkpoint_*")), "no trial checkpoint in AUTOML_HOME/ray_results"


def test_runs_read_back_over_the_rest_api(topology: Topology) -> None:
    experiment = topology.rest("GET", "experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]
    # Artifacts go through the server (--serve-artifacts), not to a path the client must reach.
    assert experiment["artifact_location"].startswith("mlflow-artifacts:"), experiment["artifact_location"]
    runs = topology.rest("POST", "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]

    def tags(run: dict) -> dict[str, str]:
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    parents = [r for r in runs if tags(r).get("automl.kind") == "job"]
    assert len(parents) == 1, [tags(r) for r in runs]
    parent = parents[0]
    assert parent["info"]["status"] == "FINISHED"
    children = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]]
    assert sorted(int(tags(r)["automl.trial_number"]) for r in children) == list(range(TRIALS))
    for run in children:
        assert {p["key"] for p in run["data"]["params"]} >= HYPERPARAMETERS
        assert tags(run)["automl.state"] == "COMPLETE" and run["info"]["status"] == "FINISHED"
        assert "val_accuracy" in {m["key"] for m in run["data"]["metrics"]}


def test_runs_and_artifacts_read_back_with_the_python_client(topology: Topology) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=topology.mlflow.url, registry_uri=topology.mlflow.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("automl.kind") == "job"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == TRIALS
    for run in children:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 1, steps

    # The parent's artifacts are listed through the server and stored where the server keeps them.
    def files(run_id: str, path: str | None = None) -> set[str]:
        found = set()
        for item in client.list_artifacts(run_id, path):
            found |= files(run_id, item.path) if item.is_dir else {item.path}
        return found

    listed = files(parent.info.run_id)
    assert listed, "the job's parent run has no artifacts"
    stored = {p.relative_to(topology.mlflow.artifacts).as_posix() for p in topology.mlflow.artifacts.rglob("*") if p.is_file()}
    for path in listed:
        assert any(s.endswith(f"{parent.info.run_id}/artifacts/{path}") for s in stored), (path, sorted(stored)[:20])


def test_best_model_loads_from_the_registry_through_the_server(topology: Topology) -> None:
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow import MlflowClient
    from sklearn.datasets import load_iris

    client = MlflowClient(tracking_uri=topology.mlflow.url, registry_uri=topology.mlflow.url)
    (version,) = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert version.status == "READY"
    best_run = client.get_run(version.run_id)
    assert best_run.data.tags["mlflow.parentRunId"]

    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(topology.mlflow.url)
    mlflow.set_registry_uri(topology.mlflow.url)
    try:
        model = mlflow.pytorch.load_model(f"models:/{MODEL_NAME}/{version.version}", map_location="cpu")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    x, y = load_iris(return_X_y=True)
    with torch.no_grad():
        predicted = model(torch.tensor(x, dtype=torch.float32)).argmax(dim=1).numpy()
    assert predicted.shape == y.shape
    assert np.mean(predicted == y) > 0.6, "the registered best model predicts far better than chance (1/3)"


def test_tracking_over_http_leaves_stdout_to_the_cli(
    topology: Topology, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's client prints "View run ... at: URL" whenever a run ends on a server; `automl run --json`
    prints its JSON on stdout, so the tracker keeps those lines out."""
    from automl.tracking import MlflowTracker

    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    tracker = MlflowTracker(topology.mlflow.url)
    tracker.start_job(experiment="topology-stdout", run_name="quiet", params={"n": 1}, tags={}, artifacts={})
    run_id = tracker.start_trial(0, {"x": 1.0}, {})
    tracker.end_trial(run_id, "COMPLETE", reason=None, error_text=None)
    tracker.finish_job("FINISHED", metrics={"best": 1.0}, params={}, tags={})
    assert capfd.readouterr().out == ""
