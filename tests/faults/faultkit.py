"""What the fault tests share: a job run through the real job store and runner, and the
invariant every fault must leave standing (the Optuna study, MLflow and the job row agree).

Imported by the tests in this folder as ``faultkit`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from mlflow import MlflowClient

from automl.settings import Settings, resolve_settings

# A trial that takes a few seconds and reports every step: long enough to inject a fault mid-job.
STEADY = """
import time

def objective(params, ctx):
    for step in range(1, ctx.max_epochs + 1):
        time.sleep(0.3)
        ctx.report(loss=(params["x"] - 0.3) ** 2 + 1.0 / step, step=step)
"""


RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}  # automl.states.mlflow_status
_modules = itertools.count(1)


def objective_module(folder: Path, source: str, **constants: Any) -> str:
    """Write ``source`` as a new module in ``folder`` (constants first); return ``module:objective``.

    Each call gets a new module name: a job's runner imports the objective by name, and two
    tests must not share a module that Python has cached.
    """
    name = f"fault_objective_{next(_modules)}_{uuid.uuid4().hex[:6]}"
    header = "".join(f"{key} = {value!r}\n" for key, value in constants.items())
    (folder / f"{name}.py").write_text(header + textwrap.dedent(source))
    return f"{name}:objective"


def job_spec(name: str, objective: str, *, trials: int, **fields: Any) -> dict[str, Any]:
    """A small custom-objective job over one float ``x`` in [0, 1], FIFO, one trial at a time.

    Its code does not travel (``code.ship: false``): these runners share this machine's disk, and
    the faults are the runner process's own; a job whose code travels runs in a driver process of
    its own (tests/faults/test_fault_runner.py has that case too)."""
    spec: dict[str, Any] = {
        "name": name,
        "objective": objective,
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "metric": "loss",
        "mode": "min",
        "sampler": {"name": "random"},
        "scheduler": {"name": "fifo"},
        "budget": {"trials": trials, "max_epochs": 1},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
        "seed": 5,
        "code": {"ship": False},
    }
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def submit(settings: Settings, spec: dict[str, Any], base_dir: Path) -> str:
    """Check and enqueue ``spec`` as ``automl submit`` does; return the job id."""
    from automl.service import check_job_file, enqueue, open_job_store

    path = base_dir / f"{spec['name']}-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return enqueue(open_job_store(settings), check_job_file(path)).id


def run_queue(settings: Settings, **runner_options: Any) -> None:
    """Run a real runner in this process until the queue is empty (uses this process's Ray)."""
    from automl.service import open_job_store
    from automl.service.runner import Runner

    Runner(open_job_store(settings), settings, poll_s=0.2, **runner_options).run(until_idle=True)


@dataclass(frozen=True)
class Records:
    """One job as its three records tell it, after :func:`assert_records_agree` checked them."""

    job: Any
    trials: list[optuna.trial.FrozenTrial]
    runs: dict[int, Any]
    events: list[Any]

    def trial(self, number: int) -> optuna.trial.FrozenTrial:
        return next(t for t in self.trials if t.number == number)

    def event_kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def assert_records_agree(settings: Settings, job_id: str, *, trials: int | None = None, final: bool = True) -> Records:
    """The invariant every fault must leave standing, for one job:

    - the Optuna study numbers its trials 0..n-1, none left RUNNING or WAITING (when ``final``);
    - MLflow has exactly one child run per trial number (none lost, none twice; mid-job, a trial
      still RUNNING in the study may have none yet), and (when ``final``) each run's status and
      ``automl.state`` tag say what the study says;
    - the job row counts the same number of finished trials, and is in a final state;
    - ``trials``, when given, is the number of trials the job had to end with.
    """
    from automl.service import open_job_store

    store = open_job_store(settings)
    job = store.get(job_id)
    study = optuna.load_study(study_name=job.study_name, storage=settings.storage_url)
    study_trials = study.get_trials(deepcopy=False)
    numbers = sorted(t.number for t in study_trials)
    assert numbers == list(range(len(study_trials))), f"study trial numbers have gaps or repeats: {numbers}"
    if trials is not None:
        assert len(study_trials) == trials, f"the study has {len(study_trials)} trials, the job asked for {trials}"
    finished = [t for t in study_trials if t.state.is_finished()]
    if final:
        assert job.is_final, f"job {job_id} is still {job.state}"
        unfinished = [(t.number, t.state.name) for t in study_trials if not t.state.is_finished()]
        assert not unfinished, f"trials left unfinished in the study: {unfinished}"
        assert job.trials_finished == len(finished), f"job row says {job.trials_finished} finished, the study {len(finished)}"
    assert job.mlflow_run_id, "the job never recorded its MLflow run"
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    child_runs = client.search_runs(
        [job.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{job.mlflow_run_id}'", max_results=50_000
    )
    by_number: dict[int, Any] = {}
    for run in child_runs:
        number = int(run.data.tags["automl.trial_number"])
        assert number not in by_number, f"trial {number} has two MLflow runs"
        by_number[number] = run
    if final:
        assert sorted(by_number) == numbers, f"MLflow runs for trials {sorted(by_number)}, the study has {numbers}"
    else:
        # Mid-job, a trial the study has just opened may have no run yet: its create was queued
        # behind the study's write when the runner died (seen on a loaded machine), and the next
        # runner opens it as it retries the trial. A finished trial's run must be there.
        assert set(by_number) <= set(numbers), f"MLflow runs for trials {sorted(by_number)}, the study has {numbers}"
        missing = [t.number for t in study_trials if t.number not in by_number and t.state.is_finished()]
        assert not missing, f"finished trials {missing} have no MLflow run (the study has {numbers})"
    # Mid-job (a runner just died) a trial's end may be in the study and not yet in MLflow:
    # that window is what the next runner repairs, so states are compared once the job is final.
    for trial in finished if final else []:
        run = by_number[trial.number]
        state = trial.state.name
        assert run.data.tags.get("automl.state") == state, (trial.number, state, run.data.tags.get("automl.state"))
        assert run.info.status == RUN_STATUS[state], (trial.number, state, run.info.status)
    return Records(job, study_trials, by_number, store.events(job_id, limit=10_000))


def settings_for(home: Path) -> Settings:
    """The embedded settings under ``home`` (``AUTOML_HOME`` is set by the ``automl_home`` fixture)."""
    settings = resolve_settings()
    assert settings.home == home.resolve(), (settings.home, home)
    return settings


class Workers:
    """``automl worker`` processes started as a user would, each in its own session (so a test
    can kill one with everything it started, its own local Ray included)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.processes: list[subprocess.Popen] = []

    def start(
        self, *args: str, fault: str | None = None, env: dict[str, str] | None = None, debug: bool = False
    ) -> subprocess.Popen:
        """Start ``automl [--debug] worker --poll 0.3 ARGS``, its output in :meth:`log`."""
        worker_env = {**self.env, **(env or {})}
        worker_env.pop("AUTOML_FAULT", None)
        if fault:
            worker_env["AUTOML_FAULT"] = fault
        log = open(self.log_path(len(self.processes)), "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "automl.cli", *(["--debug"] if debug else []), "worker", "--poll", "0.3", *args],
            env=worker_env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def log_path(self, index: int) -> Path:
        return self.root / f"worker-{index}.log"

    def log(self, index: int) -> str:
        return self.log_path(index).read_text()

    def wait(self, index: int, timeout: float = 240) -> int:
        """Wait for worker ``index`` to exit; then kill what it left behind (its Ray); return its exit code."""
        process = self.processes[index]
        try:
            return process.wait(timeout=timeout)
        finally:
            kill_session(process)

    def stop_all(self) -> None:
        for process in self.processes:
            kill_session(process)


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL every process of ``process``'s session (it was started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    """Wait until ``predicate()`` is true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def service_env(home: Path) -> dict[str, str]:
    """This process's environment for CLI subprocesses on the embedded state under ``home``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "AUTOML_FAULT"}
    }
    env["AUTOML_HOME"] = str(home)
    return env
