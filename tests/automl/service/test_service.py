"""The job service end to end, through the real CLI in separate processes: submit, workers,
status, best, cancel, a runner killed with SIGKILL, and a runner stopped with SIGTERM."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from automl.store import open_store
from automl.store.jobs import utcnow

pytestmark = pytest.mark.slow

SLOW_OBJECTIVE = """
import time

def objective(params, ctx):
    for step in range(1, ctx.max_epochs + 1):
        time.sleep(0.4)
        ctx.report(loss=(params["x"] - 0.3) ** 2 + 1.0 / step, step=step)
"""


class Service:
    """A state directory and helpers to drive the CLI against it, as a user would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"}
        }
        self.env["AUTOML_HOME"] = str(self.home)
        self.workers: list[subprocess.Popen] = []

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "automl.cli", *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def worker(self, *args: str) -> subprocess.Popen:
        log = open(self.root / f"worker-{len(self.workers)}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "automl.cli", "worker", "--poll", "0.3", *args],
            env=self.env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(process)
        return process

    def log(self, index: int) -> str:
        return (self.root / f"worker-{index}.log").read_text()

    def job_file(self, name: str, spec: dict) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        return path

    def submit(self, path: Path) -> str:
        result = self.cli("submit", str(path))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    @property
    def store(self):
        return open_store(f"sqlite:///{self.home / 'jobs.db'}")

    def study(self, job_id: str) -> optuna.Study:
        job = self.store.get(job_id)
        return optuna.load_study(study_name=job.study_name, storage=f"sqlite:///{self.home / 'studies.db'}")

    def mlflow(self) -> MlflowClient:
        return MlflowClient(tracking_uri=f"sqlite:///{self.home / 'mlflow.db'}")

    def stop_all(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def service(tmp_path: Path, ray_session: None, mlflow_store_template: Path) -> Iterator[Service]:
    """The CLI on a new state directory; its runners drive this test session's Ray (RAY_ADDRESS),
    as runners drive a cluster: seconds saved per runner, and a runner that dies takes only its
    own trials' workers with it (tests/faults/test_fault_runner.py does the same). Its MLflow store
    is made (a copy of the session's empty one): the first runner would otherwise spend seconds
    making MLflow's schema, and these tests are about the queue, not a first run."""
    import ray

    (tmp_path / "slow_objective.py").write_text(SLOW_OBJECTIVE)
    svc = Service(tmp_path)
    svc.home.mkdir()
    shutil.copyfile(mlflow_store_template, svc.home / "mlflow.db")
    svc.env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    yield svc
    svc.stop_all()


def slow_job(trials: int = 6, *, plots: bool = False) -> dict:
    """A custom-objective job of ``trials`` trials, one at a time, each 3 steps of 0.4 s.

    Without the end-of-job plots unless asked: each runner or job driver that draws them starts a
    plotter process and waits for it before it exits, seconds a test, and these tests are about
    the queue (tests/automl/tracking/test_plots.py tests the plots). The cancel test keeps them:
    a cancelled job's run must end KILLED with its plots drawn too.
    """
    return {
        "name": "slow",
        "objective": "slow_objective:objective",
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "metric": "loss",
        "mode": "min",
        "scheduler": {"name": "fifo"},
        "budget": {"trials": trials, "max_epochs": 3},
        "resources": {"max_concurrent": 1},
        "seed": 11,
        "tracking": {"plots": plots},
    }


def assert_exact_trials(service: Service, job_id: str, trials: int) -> None:
    """The study, MLflow and the job row agree: exactly ``trials`` finished trials, none stuck."""
    study_trials = service.study(job_id).get_trials()
    assert sorted(t.number for t in study_trials) == list(range(trials))
    assert {t.state.name for t in study_trials} == {"COMPLETE"}, [t.state.name for t in study_trials]
    job = service.store.get(job_id)
    assert job.trials_finished == trials
    assert job.snapshot is not None and job.snapshot.counts == {"COMPLETE": trials}, "the job row's snapshot agrees"
    client = service.mlflow()
    runs = client.search_runs(
        [job.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{job.mlflow_run_id}'", max_results=1000
    )
    numbers = sorted(int(r.data.tags["automl.trial_number"]) for r in runs)
    assert numbers == list(range(trials)), "one MLflow run per trial, none twice"
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert client.get_run(job.mlflow_run_id).info.status == "FINISHED"


def test_job_lifecycle_through_the_cli(service: Service) -> None:
    iris = service.job_file(
        "iris",
        {
            "name": "iris-service",
            "trainer": {"name": "mlp", "dataset": "iris"},
            "space": "mlp-small",
            "metric": "val_accuracy",
            "mode": "max",
            "budget": {"trials": 4, "max_epochs": 3},
            "seed": 2,
        },
    )
    job_id = service.submit(iris)
    cancelled = service.submit(service.job_file("other", slow_job()))
    assert "cancelled" in service.cli("cancel", cancelled).stdout
    listed = json.loads(service.cli("list", "--json").stdout)
    assert {(j["id"], j["state"]) for j in listed} == {(job_id, "queued"), (cancelled, "cancelled")}

    worker = service.worker("--until-idle")
    assert worker.wait(timeout=240) == 0, service.log(0)

    status = service.cli("status", job_id)
    assert status.returncode == 0 and "succeeded" in status.stdout and "4/4" in status.stdout
    assert "Top trials" in status.stdout and "Recent events" in status.stdout
    best = json.loads(service.cli("best", job_id, "--json").stdout)
    assert best["state"] == "succeeded" and best["metric"] == "val_accuracy"
    assert set(best["best_params"]) == {"learning_rate", "batch_size", "dropout", "l1", "l2"}
    assert best["model_uri"] == "models:/iris-service/1"
    assert service.store.get(cancelled).state == "cancelled"
    assert service.store.get(cancelled).attempts == 0, "a cancelled queued job never runs"
    kinds = [e.kind for e in service.store.events(job_id)]
    assert kinds[:2] == ["submitted", "claimed"] and kinds[-1] == "succeeded"


def test_killed_runner_job_is_reclaimed_and_resumed_exactly(service: Service) -> None:
    job_id = service.submit(service.job_file("slow", slow_job(trials=6)))
    first = service.worker("--lease", "3")
    wait_for(lambda: service.store.get(job_id).trials_finished >= 2, 120, "two finished trials")
    os.killpg(first.pid, signal.SIGKILL)  # the runner and everything it started die at once; Ray ends its trials
    first.wait(timeout=30)
    held = service.store.get(job_id)
    assert held.state == "running" and held.trials_finished < 6
    interrupted = {t.number: t.params for t in service.study(job_id).get_trials() if t.state.name == "RUNNING" and t.params}
    # Only once the dead runner's lease has run out may another runner take the job (one started
    # earlier with --until-idle waits for the lease: tests/faults/test_fault_runner.py).
    wait_for(lambda: service.store.get(job_id).lease_expires_at < utcnow(), 30, "the dead runner's lease to expire")

    second = service.worker("--lease", "3", "--until-idle")
    assert second.wait(timeout=240) == 0, service.log(1)
    job = service.store.get(job_id)
    assert job.state == "succeeded", job.error
    assert job.attempts == 2
    kinds = [e.kind for e in service.store.events(job_id, limit=100)]
    assert "reclaimed" in kinds and "resumed" in kinds
    assert_exact_trials(service, job_id, 6)
    retried = {t.number: t.params for t in service.study(job_id).get_trials() if t.number in interrupted}
    assert retried == interrupted, "an interrupted trial is retried with the same hyperparameters"


def test_sigterm_releases_the_job_and_the_next_runner_finishes_it(service: Service) -> None:
    job_id = service.submit(service.job_file("slow", slow_job(trials=5)))
    first = service.worker()
    wait_for(lambda: service.store.get(job_id).trials_finished >= 1, 120, "a finished trial")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0, service.log(0)
    released = service.store.get(job_id)
    assert released.state == "queued" and released.runner_id is None
    assert "released" in [e.kind for e in service.store.events(job_id)]

    second = service.worker("--until-idle")
    assert second.wait(timeout=240) == 0, service.log(1)
    assert service.store.get(job_id).state == "succeeded"
    assert_exact_trials(service, job_id, 5)


def test_cancel_stops_a_running_job_within_seconds(service: Service) -> None:
    job_id = service.submit(service.job_file("slow", slow_job(trials=20, plots=True)))
    worker = service.worker()
    wait_for(lambda: service.store.get(job_id).trials_finished >= 1, 120, "a finished trial")
    requested = time.time()
    result = service.cli("cancel", job_id)
    assert result.returncode == 0 and "cancel requested" in result.stdout
    wait_for(lambda: service.store.get(job_id).state == "cancelled", 30, "the job to be cancelled")
    assert time.time() - requested < 30
    trials = service.study(job_id).get_trials()
    assert len(trials) < 20
    assert "RUNNING" not in {t.state.name for t in trials}, "no trial left running"
    job = service.store.get(job_id)
    assert service.mlflow().get_run(job.mlflow_run_id).info.status == "KILLED"
    runs = service.mlflow().search_runs(
        [job.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{job.mlflow_run_id}'", max_results=1000
    )
    assert sorted(int(r.data.tags["automl.trial_number"]) for r in runs) == sorted(t.number for t in trials)
    assert "RUNNING" not in {r.info.status for r in runs}
    kinds = [e.kind for e in service.store.events(job_id, limit=100)]
    assert "cancel_requested" in kinds and kinds[-1] == "cancelled"
    assert worker.poll() is None, "the runner itself keeps serving the queue"


def test_one_runner_runs_two_jobs_side_by_side(service: Service) -> None:
    short = {**slow_job(trials=3), "name": "short", "budget": {"trials": 3, "max_epochs": 2}}
    long = {**slow_job(trials=3), "name": "long", "budget": {"trials": 3, "max_epochs": 4}}
    ids = {service.submit(service.job_file("short", short)): 2, service.submit(service.job_file("long", long)): 4}
    worker = service.worker("--concurrency", "2", "--until-idle")
    assert worker.wait(timeout=240) == 0, service.log(0)
    for job_id, epochs in ids.items():
        assert service.store.get(job_id).state == "succeeded"
        trials = service.study(job_id).get_trials()
        assert len(trials) == 3 and {t.state.name for t in trials} == {"COMPLETE"}
        # Each job's trials ran its own plan: as many steps as its own max_epochs.
        assert {len(t.intermediate_values) for t in trials} == {epochs}
    events = [e for job_id in ids for e in service.store.events(job_id)]
    claimed = sorted(e.at for e in events if e.kind == "claimed")
    finished = sorted(e.at for e in events if e.kind == "succeeded")
    assert claimed[1] < finished[0], "the second job started before the first ended"


TWO_OBJECTIVES = """
def objective(params, ctx):
    if params["x"] > 1.6:
        raise RuntimeError("x is too large")
    for step in range(1, ctx.max_epochs + 1):
        ctx.report(a=(params["x"] - 0.5) ** 2 + 1.0 / step, b=abs(params["y"]) + params["x"] / step, step=step)
"""


def test_status_reads_a_snapshot_that_agrees_with_the_study(tmp_path: Path, tracked_home: Path, ray_session: None) -> None:
    """A real job through the runner: the snapshot the runner builds trial by trial, the one it
    leaves in the job row, and what ``automl status`` shows all equal what the study holds."""
    from typer.testing import CliRunner

    from automl.cli import app
    from automl.results import TrialSummary, pareto_front, top_trials
    from automl.service import best_of_job, check_job_file, enqueue, open_job_store, study_trials
    from automl.service.runner import Runner
    from automl.settings import resolve_settings
    from automl.store import JobStore
    from automl.store.snapshot import JobSnapshot

    class RecordingStore(JobStore):
        """The real store, keeping every snapshot the runner writes as a trial finishes."""

        progress: list[tuple[int, JobSnapshot | None]]

        def record_progress(self, job_id, runner_id, *, finished, best_value, snapshot=None):
            self.progress.append((finished, snapshot))
            super().record_progress(job_id, runner_id, finished=finished, best_value=best_value, snapshot=snapshot)

    (tmp_path / "two_objectives.py").write_text(TWO_OBJECTIVES)
    spec = {
        "name": "snap",
        "objective": "two_objectives:objective",
        "space": {"x": {"type": "float", "low": -1, "high": 2}, "y": {"type": "float", "low": -1, "high": 1}},
        "metric": ["a", "b"],
        "mode": ["min", "min"],
        "sampler": {"name": "nsga2"},
        "scheduler": {"name": "asha", "grace_period": 1},
        "budget": {"trials": 10, "max_epochs": 2},
        "resources": {"max_concurrent": 2},
        "seed": 5,
        "tracking": {"plots": False},
    }
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump(spec))
    settings = resolve_settings()
    store = RecordingStore(open_job_store(settings).engine)
    store.progress = []
    job = enqueue(store, check_job_file(path))
    runner = Runner(store, settings, runner_id="snapshot-test")
    runner.run_job(store.claim(runner.runner_id, lease_s=300, job_id=job.id))

    final = store.get(job.id)
    assert final.state == "succeeded", final.error
    trials = study_trials(settings, final.study_name)
    expected = JobSnapshot.of_trials(trials, ["min", "min"])
    assert expected.finished == 10 == final.trials_finished
    assert expected.counts.get("FAIL", 0) >= 1 and expected.pareto, expected.counts  # the case is not trivial
    finished, incremental = store.progress[-1]
    assert finished == 10 and incremental == expected, "built trial by trial, it equals the study read whole"
    # As the job ended, the runner wrote the study's snapshot with the result's best model and run.
    assert final.snapshot is not None and final.snapshot.concluded
    assert dataclasses.replace(final.snapshot, model_uri=None, best_run_id=None, concluded=False) == expected
    assert best_of_job(settings, final)["pareto_front"] == [
        {"trial": t.number, "values": {"a": t.values[0], "b": t.values[1]}, "params": t.params}
        for t in pareto_front(trials, ["min", "min"])
    ]

    shown = CliRunner().invoke(app, ["status", job.id, "--json"])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    assert status["states"] == expected.counts and status["job"]["trial_states"] == expected.counts
    assert [TrialSummary(**{**t, "values": tuple(t["values"])}) for t in status["top_trials"]] == top_trials(trials, "min", 5)
    assert [row["trial"] for row in status["pareto_front"]] == [t.number for t in pareto_front(trials, ["min", "min"])]

    # The plain view, and nothing heavy imported on the way: status reads one row.
    probe = (
        "import sys\nfrom automl.cli import app\n"
        f"app(['status', {job.id!r}], standalone_mode=False)\n"
        "print('HEAVY', sorted(m for m in ('optuna', 'ray', 'torch', 'mlflow', 'alembic') if m in sys.modules))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"}
    }
    plain = subprocess.run(
        [sys.executable, "-c", probe], env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == 0, plain.stderr
    assert "10/10 finished" in plain.stdout and "Pareto front" in plain.stdout and "Top trials" in plain.stdout
    assert "HEAVY []" in plain.stdout


def test_a_runner_tracks_a_job_where_its_spec_says(
    tmp_path: Path, automl_home: Path, ray_session: None, mlflow_store_template: Path
) -> None:
    """``tracking.tracking_uri`` in a spec overrides MLFLOW_TRACKING_URI (docs/tracking.md), for a
    job run by a runner too: runners tracked every job in their own store, whatever the spec said."""
    from automl.service import check_job_file, enqueue, open_job_store
    from automl.service.runner import Runner
    from automl.settings import resolve_settings

    (tmp_path / "slow_objective.py").write_text(SLOW_OBJECTIVE)
    shutil.copyfile(mlflow_store_template, tmp_path / "team-mlflow.db")  # the team's store, made already
    own = f"sqlite:///{tmp_path / 'team-mlflow.db'}"
    spec = {
        **slow_job(trials=1),
        "budget": {"trials": 1, "max_epochs": 1},
        "tracking": {"tracking_uri": own, "register_model": False},
    }
    path = tmp_path / "tracked.yaml"
    path.write_text(yaml.safe_dump(spec))
    settings = resolve_settings()
    store = open_job_store(settings)
    job = enqueue(store, check_job_file(path))
    runner = Runner(store, settings, runner_id="tracking-test")
    runner.run_job(store.claim(runner.runner_id, lease_s=300, job_id=job.id))

    final = store.get(job.id)
    assert final.state == "succeeded", final.error
    parent = MlflowClient(tracking_uri=own).get_run(final.mlflow_run_id)
    assert parent.info.experiment_id == final.experiment_id
    runs = MlflowClient(tracking_uri=own).search_runs(
        [final.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{final.mlflow_run_id}'"
    )
    assert [r.data.tags["automl.trial_number"] for r in runs] == ["0"]
    assert not (automl_home / "mlflow.db").exists(), "nothing tracked in the runner's own store"


QUICK_OBJECTIVE = """
def objective(params, ctx):
    ctx.report(loss=(params["x"] - 0.3) ** 2, step=1)
"""


def test_a_runner_runs_the_plan_checked_at_submit_and_plans_only_older_jobs(
    tmp_path: Path, tracked_home: Path, ray_session: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec is checked once, at submit; the queue keeps the plan and the runner trusts it. A
    job queued before plans were stored (no plan) is still run: the runner plans it itself."""
    import automl.engine.plan as plan_module
    from automl.service import check_job_file, enqueue, open_job_store
    from automl.service.runner import Runner
    from automl.settings import resolve_settings
    from automl.spec import spec_to_yaml

    checks: list[str] = []
    real_check_spec = plan_module.check_spec

    def counted_check_spec(spec, **kwargs):
        checks.append(spec.name)
        return real_check_spec(spec, **kwargs)

    monkeypatch.setattr(plan_module, "check_spec", counted_check_spec)
    (tmp_path / "quick_objective.py").write_text(QUICK_OBJECTIVE)
    path = tmp_path / "quick.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "quick",
                "objective": "quick_objective:objective",
                "space": {"x": {"type": "float", "low": 0, "high": 1}},
                "metric": "loss",
                "scheduler": {"name": "fifo"},
                "budget": {"trials": 2, "max_epochs": 1},
                "tracking": {"register_model": False, "plots": False},
            }
        )
    )
    settings = resolve_settings()
    store = open_job_store(settings)
    checked = check_job_file(path)
    assert checks == ["quick"], "submit checks the spec once"
    job = enqueue(store, checked)
    # As a job queued before migration 0003: its row holds the spec and no plan.
    older = store.submit(name="quick", spec_yaml=spec_to_yaml(checked.spec), trials_total=2, base_dir=str(checked.base_dir))
    assert store.get(job.id).plan_json is not None and store.get(older.id).plan_json is None

    runner = Runner(store, settings, runner_id="plan-test")
    runner.run_job(store.claim(runner.runner_id, lease_s=300, job_id=job.id))
    assert store.get(job.id).state == "succeeded", store.get(job.id).error
    assert checks == ["quick"], "the runner ran the stored plan without checking the spec again"
    runner.run_job(store.claim(runner.runner_id, lease_s=300, job_id=older.id))
    assert store.get(older.id).state == "succeeded", store.get(older.id).error
    assert checks == ["quick", "quick"], "a job without a stored plan is planned by the runner"
