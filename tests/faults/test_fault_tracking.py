"""The MLflow tracking server (a real ``mlflow server`` on SQLite) dies mid-job: the search goes
on; when the server comes back the held writes are replayed and MLflow agrees with the study;
when it never comes back the job still succeeds and says in its events what was not tracked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import STEADY, assert_records_agree, job_spec, objective_module, run_queue, settings_for, submit, wait_for

pytestmark = pytest.mark.slow


class MlflowServer:
    """``mlflow server`` on a SQLite store and a local artifact folder, killed and restarted at will."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.root / "mlflow-server.log", "a")  # noqa: SIM115 - kept by the child
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow-server.db'}",
                "--artifacts-destination",
                str(self.root / "mlflow-artifacts"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self.answers, 120, f"the MLflow server on port {self.port} (log: {self.root / 'mlflow-server.log'})", poll=0.3)

    def answers(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def shared_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One server for this module (it takes seconds to start); each test leaves it killed or running."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def mlflow_server(shared_mlflow_server: MlflowServer, automl_home: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowServer:
    """The module's server, running, as this test's tracking URI."""
    if not shared_mlflow_server.answers():
        shared_mlflow_server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_mlflow_server.uri)
    return shared_mlflow_server


def run_with_outage(settings, job_id: str, server: MlflowServer, *, restart_after_trials: int | None) -> None:
    """Run the queue here while another thread kills the server after the first finished trial
    and, if asked, starts it again once ``restart_after_trials`` trials have finished."""
    from automl.service import open_job_store

    store = open_job_store(settings)
    problems: list[BaseException] = []

    def outage() -> None:
        try:
            wait_for(lambda: store.get(job_id).trials_finished >= 1, 180, "a finished trial")
            server.kill()
            if restart_after_trials is not None:
                wait_for(
                    lambda: store.get(job_id).trials_finished >= restart_after_trials, 180, "more trials while MLflow is down"
                )
                server.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            problems.append(exc)

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    run_queue(settings)
    thread.join(timeout=180)
    assert not problems, problems


def test_tracking_server_down_mid_job_then_back_catches_up(
    automl_home: Path, ray_session: None, tmp_path: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job waits for the server at its end up to this long (it returns as soon as it answers):
    # long enough for a restart on a loaded machine.
    monkeypatch.setenv("AUTOML_TRACKING_GRACE_S", "240")
    settings = settings_for(automl_home)
    assert settings.tracking_uri == mlflow_server.uri
    ref = objective_module(tmp_path, STEADY)
    job_id = submit(settings, job_spec("mlflow-outage", ref, trials=5, budget={"max_epochs": 2}), tmp_path)
    run_with_outage(settings, job_id, mlflow_server, restart_after_trials=3)

    records = assert_records_agree(settings, job_id, trials=5)  # read back through the restarted server
    assert records.job.state == "succeeded", records.job.error
    assert {t.state.name for t in records.trials} == {"COMPLETE"}
    assert "tracking_caught_up" in records.event_kinds(), records.event_kinds()
    # Every epoch of every trial reached MLflow, the ones logged while it was down included.
    for trial in records.trials:
        assert records.runs[trial.number].data.metrics["loss"] == pytest.approx(trial.value)


def test_tracking_server_gone_for_good_the_job_succeeds_and_says_what_was_not_tracked(
    automl_home: Path, ray_session: None, tmp_path: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automl.service import open_job_store

    monkeypatch.setenv("AUTOML_TRACKING_GRACE_S", "2")
    settings = settings_for(automl_home)
    ref = objective_module(tmp_path, STEADY)
    job_id = submit(settings, job_spec("mlflow-gone", ref, trials=3, budget={"max_epochs": 2}), tmp_path)
    run_with_outage(settings, job_id, mlflow_server, restart_after_trials=None)

    store = open_job_store(settings)
    job = store.get(job_id)
    assert job.state == "succeeded", job.error
    assert job.trials_finished == 3
    events = {e.kind: e.message for e in store.events(job_id, limit=1000)}
    assert "tracking_incomplete" in events, events
    assert "tracking writes were not recorded" in events["tracking_incomplete"]
    import optuna

    study = optuna.load_study(study_name=job.study_name, storage=settings.storage_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3, "the study has every trial"
