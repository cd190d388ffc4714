"""The writer process makes a job's study and MLflow trial writes: in order, durable, and on its own
when the driver goes away. Real child process, real SQLite Optuna storage and MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from automl.engine.working_study import StudyDiverged, WorkingStudy
from automl.engine.write_behind import JobWriter, RemoteTrialRuns, WriteBehind, shared
from automl.tracking import MlflowTracker, RunUpdate

REPO = Path(__file__).resolve().parents[3]
SPACE = {"learning_rate": FloatDistribution(1e-4, 1e-1, log=True)}


@pytest.fixture
def remote() -> JobWriter:
    writer = WriteBehind()
    yield writer.job("job-1")
    writer.close()


def _working(url: str) -> WorkingStudy:
    storage = optuna.storages.RDBStorage(url)
    return WorkingStudy(storage, "job", ["maximize"], optuna.samplers.RandomSampler(seed=0))


def test_study_writes_made_by_the_writer_process_match_the_working_copy(tmp_path: Path, remote: JobWriter) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    work = _working(url)
    remote.send("open_study", url, "job")
    work.write_behind(remote)
    for i in range(4):
        trial = work.memory.ask(SPACE)
        work.started(trial, {"ray_trial_id": f"t{i}"})
        work.report(trial, 0.1 * i, 1)
        work.tell(trial, 0.5 + i, TrialState.COMPLETE) if i < 3 else work.tell(trial, None, TrialState.PRUNED)
    work.drain()

    durable = optuna.load_study(study_name="job", storage=url).get_trials(deepcopy=False)
    memory = work.memory.get_trials(deepcopy=False)
    assert [t.number for t in durable] == list(range(4))
    for d, m in zip(durable, memory, strict=True):
        assert (d.state, d.values, d.params, d.intermediate_values) == (m.state, m.values, m.params, m.intermediate_values)
        assert d.user_attrs["ray_trial_id"] == f"t{d.number}"
    assert remote.remote.call("ping") != os.getpid()


def test_a_second_writer_is_found_when_the_writes_are_drained(tmp_path: Path, remote: JobWriter) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    work = _working(url)
    remote.send("open_study", url, "job")
    work.write_behind(remote)
    optuna.load_study(study_name="job", storage=url).ask()  # another process takes trial number 0
    work.started(work.memory.ask(SPACE), {})
    with pytest.raises(StudyDiverged, match="second runner"):
        work.drain()


def test_mlflow_trial_runs_through_the_writer_process(tmp_path: Path, remote: JobWriter) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, artifact_root=(tmp_path / "artifacts").as_uri())
    tracker.start_job(experiment="wb", run_name="job", params={}, tags={}, artifacts={})
    remote.send("open_tracking", uri, tracker.artifact_root, tracker.experiment_id, tracker.parent_run_id)
    runs = RemoteTrialRuns(remote)
    run_id = runs.create_trial_run(0, {"automl.ray_trial_id": "t0"})
    runs.update_run(
        run_id, RunUpdate(params={"lr": 0.1}).merged(RunUpdate.report({"loss": 0.5}, 1)).merged(RunUpdate.end("COMPLETE"))
    )
    assert runs.find_or_create_trial_run(0, {}) == run_id  # a replayed create finds the run

    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1"} and run.data.metrics == {"loss": 0.5}
    assert run.data.tags["automl.state"] == "COMPLETE" and run.data.tags["mlflow.parentRunId"] == tracker.parent_run_id


def test_an_error_in_the_writer_comes_back_to_the_caller(remote: JobWriter) -> None:
    with pytest.raises(AttributeError):
        remote.call("study_write", "set_trial_user_attr", 0, "k", "v")  # no study opened: storage is None
    with pytest.raises(AttributeError, match="no operation"):
        remote.call("__init__")
    assert remote.remote.call("ping") > 0  # the writer goes on


def test_jobs_sharing_the_writer_keep_their_own_studies(tmp_path: Path) -> None:
    writer = shared()
    assert shared() is writer and writer.alive()
    works = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / (name + '.db')}"
        work = _working(url)
        job = writer.job(name)
        job.send("open_study", url, "job")
        work.write_behind(job)
        works.append((url, work, job))
    for _ in range(3):
        for _url, work, _job in works:
            trial = work.memory.ask(SPACE)
            work.started(trial, {})
            work.tell(trial, 1.0, TrialState.COMPLETE)
    for url, work, job in works:
        work.drain()
        job.close()
        assert len(optuna.load_study(study_name="job", storage=url).trials) == 3


def test_the_writer_finishes_what_it_was_sent_when_the_driver_is_gone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    work = _working(url)
    writer = WriteBehind()
    assert os.getsid(writer._process.pid) != os.getsid(0)  # its own session: the runner's group signals miss it
    remote = writer.job("job-1")
    remote.send("open_study", url, "job")
    work.write_behind(remote)
    for _ in range(20):
        trial = work.memory.ask(SPACE)
        work.started(trial, {})
        work.tell(trial, 1.0, TrialState.COMPLETE)
    writer._conn.close()  # as a killed driver's end of the socket: no goodbye
    writer._process.wait(timeout=60)
    durable = optuna.load_study(study_name="job", storage=url).get_trials(deepcopy=False)
    assert len(durable) == 20 and all(t.state == TrialState.COMPLETE for t in durable)


def test_a_closed_writer_refuses_new_writes_and_close_does_not_wait_for_its_exit() -> None:
    writer = WriteBehind()
    writer.call("ping")
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 5
    assert not writer.alive()
    with pytest.raises(Exception, match="closed"):
        writer.call("ping")


def test_the_shared_writer_closes_at_exit_without_starting_a_thread(tmp_path: Path) -> None:
    """Python 3.12 refuses new threads once the interpreter is shutting down, which is when the
    shared writer is closed: simulated here by refusing them in an exit hook that runs first."""
    script = tmp_path / "exit.py"
    script.write_text(
        "import atexit, threading\n"
        "from automl.engine.write_behind import shared\n"
        "writer = shared()\n"
        "writer.call('ping')\n"
        "def refuse(self):\n"
        '    raise RuntimeError("can\'t create new thread at interpreter shutdown")\n'
        "atexit.register(lambda: setattr(threading.Thread, 'start', refuse))  # runs before shared()'s hook\n"
        "print(writer._process.pid)\n"
    )
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Exception ignored" not in done.stderr and "RuntimeError" not in done.stderr, done.stderr
    child = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:  # it was told to stop: it exits on its own
        time.sleep(0.1)
    assert not _alive(child), "the writer process outlived its parent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_broken_connection_in_the_writer_is_seen_as_one_by_the_caller() -> None:
    """The tracking writer holds and replays a write whose connection broke (the server may have
    carried it out); the writer process must send back what the transport said, not only MLflow's
    wrapper, or a create whose answer was cut off is given up and its run stays RUNNING."""
    import socket
    import threading

    from automl.tracking.writer import connection_broke

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def cut_every_answer_short() -> None:  # an MLflow server killed while it answers
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"run": ')

    threading.Thread(target=cut_every_answer_short, daemon=True).start()
    writer = WriteBehind()
    try:
        remote = writer.job("job-1")
        remote.call("open_tracking", f"http://127.0.0.1:{port}", None, "1", "parent")
        with pytest.raises(Exception) as caught:
            RemoteTrialRuns(remote).create_trial_run(0, {})
        assert connection_broke(caught.value), f"not seen as a broken connection: {caught.value!r}"
    finally:
        writer.close()
        listener.close()
