"""The runner dies at the worst moments (a real ``os._exit`` at a named point, see
``automl/faults.py``), one after another on the same job, and is replaced; then SIGTERM with
two jobs in flight. Each time the records must agree and no finished trial may be lost or
recorded twice. An ``--until-idle`` runner waits out a killed runner's lease and finishes its
job; a job the cluster cannot run fails with one line in the runner's log."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import (
    Workers,
    assert_records_agree,
    job_spec,
    kill_session,
    objective_module,
    service_env,
    settings_for,
    submit,
    wait_for,
)

from automl.faults import EXIT_CODE
from automl.store.jobs import utcnow

pytestmark = pytest.mark.slow
# The jobs here draw no end-of-job plots: each runner (or job driver) that finished a job would
# start a plotter process and wait for its plots before exiting, and the tests are about the runner
# (tests/automl/tracking/test_plots.py tests the plots).
NO_PLOTS = {"plots": False}

QUICK = """
import time

def objective(params, ctx):
    for step in range(1, ctx.max_epochs + 1):
        time.sleep(SLEEP)
        ctx.report(loss=(params["x"] - 0.3) ** 2 + 1.0 / step, step=step)
"""


@pytest.fixture
def workers(tracked_home: Path, tmp_path: Path, ray_session: None) -> Iterator[Workers]:
    """Runner processes that drive this test session's Ray (RAY_ADDRESS): seconds saved per runner,
    and a runner that dies takes only its own trials' workers with it, as on a cluster. The state
    directory's MLflow store is made already (``tracked_home``): these tests are about the runner."""
    import ray

    pool = Workers(tmp_path, {**service_env(tracked_home), "RAY_ADDRESS": ray.get_runtime_context().gcs_address})
    yield pool
    pool.stop_all()


def wait_lease_expired(store, job_id: str) -> None:
    def expired() -> bool:
        job = store.get(job_id)
        return job.state != "running" or (job.lease_expires_at is not None and job.lease_expires_at < utcnow())

    wait_for(expired, 30, f"the lease of job {job_id} to expire")


def test_runner_killed_between_a_trial_finishing_and_its_recording_loses_nothing(
    automl_home: Path, tmp_path: Path, workers: Workers
) -> None:
    from automl.service import open_job_store

    settings = settings_for(automl_home)
    ref = objective_module(tmp_path, QUICK, SLEEP=0.1)
    job_id = submit(settings, job_spec("crashy", ref, trials=5, budget={"max_epochs": 2}, tracking=NO_PLOTS), tmp_path)
    store = open_job_store(settings)

    # 1. Trial 1 sent its final report; the runner dies before anything records its end.
    assert workers.wait(index=_start(workers, "trial_reported:2")) == EXIT_CODE, workers.log(0)
    assert "exiting at trial_reported" in workers.log(0)
    middle = assert_records_agree(settings, job_id, final=False)
    assert [t.state.name for t in middle.trials] == ["COMPLETE", "RUNNING"]
    lost_params = middle.trial(1).params

    # 2. A trial's end is in the study, not yet in MLflow or the job row; the runner dies.
    wait_lease_expired(store, job_id)
    assert workers.wait(index=_start(workers, "trial_recorded:2")) == EXIT_CODE, workers.log(1)
    middle = assert_records_agree(settings, job_id, final=False)
    assert middle.trial(1).params == lost_params, "the interrupted trial is retried with its own parameters"

    # 3. Every trial is recorded; the runner dies before the job row says so.
    wait_lease_expired(store, job_id)
    assert workers.wait(index=_start(workers, "job_finishing")) == EXIT_CODE, workers.log(2)
    assert store.get(job_id).state == "running"

    # 4. A healthy runner takes over and finishes the job.
    wait_lease_expired(store, job_id)
    assert workers.wait(index=_start(workers, None)) == 0, workers.log(3)
    records = assert_records_agree(settings, job_id, trials=5)
    assert records.job.state == "succeeded", records.job.error
    assert {t.state.name for t in records.trials} == {"COMPLETE"}
    assert records.job.attempts == 4
    assert records.event_kinds().count("reclaimed") == 3


def test_a_job_s_own_driver_that_dies_sends_the_job_back_to_the_queue_and_nothing_is_lost(
    automl_home: Path, tmp_path: Path, workers: Workers
) -> None:
    """A job whose code travels runs in a Ray driver of its own (the runner has RAY_ADDRESS). Each
    driver here dies as its second trial reports (the fault is inherited from the runner): the runner
    puts the job back in the queue and takes it again, and the third driver, with one trial left,
    finishes it: three trials, each recorded once."""
    from automl.service import open_job_store

    settings = settings_for(automl_home)
    ref = objective_module(tmp_path, QUICK, SLEEP=0.1)
    spec = job_spec("driver-dies", ref, trials=3, code={"ship": True}, tracking=NO_PLOTS)
    job_id = submit(settings, spec, tmp_path)
    assert workers.wait(index=_start(workers, "trial_reported:2")) == 0, workers.log(0)
    log = workers.log(0)
    assert log.count("the job's Ray driver exited with code 86") == 2, log
    assert log.count("it goes back to the queue") == 2, log  # the driver's last words, each time: its fault
    records = assert_records_agree(settings, job_id, trials=3)
    assert records.job.state == "succeeded", records.job.error
    assert records.job.attempts == 3 and records.job.code_sha256 is not None
    assert records.event_kinds().count("released") == 2
    assert f"job {job_id} (driver-dies): succeeded" in log, log
    assert open_job_store(settings).get(job_id).trials_finished == 3


def _start(workers: Workers, fault: str | None) -> int:
    workers.start("--until-idle", "--lease", "3", fault=fault)
    return len(workers.processes) - 1


def test_sigterm_with_two_jobs_in_flight_releases_both_and_exits_zero(
    automl_home: Path, tmp_path: Path, workers: Workers
) -> None:
    from automl.service import open_job_store

    settings = settings_for(automl_home)
    ref = objective_module(tmp_path, QUICK, SLEEP=0.5)
    ids = [
        submit(settings, job_spec(f"twin{i}", ref, trials=4, budget={"max_epochs": 2}, tracking=NO_PLOTS), tmp_path)
        for i in range(2)
    ]
    store = open_job_store(settings)
    first = workers.start("--concurrency", "2")
    wait_for(lambda: all(store.get(j).trials_finished >= 1 for j in ids), 180, "a finished trial in each job")
    first.send_signal(signal.SIGTERM)
    assert workers.wait(0, timeout=90) == 0, workers.log(0)
    for job_id in ids:
        job = store.get(job_id)
        assert job.state == "queued" and job.runner_id is None, (job.state, job.runner_id)
        assert "released" in [e.kind for e in store.events(job_id)]
        # Nothing left half-done: every trial the runner started is finished or left RUNNING
        # for the next runner (never FAIL for having been interrupted), and MLflow agrees.
        middle = assert_records_agree(settings, job_id, final=False)
        assert {t.state.name for t in middle.trials} <= {"COMPLETE", "RUNNING"}
        assert middle.job.trials_finished < 4

    assert workers.wait(index=_start_plain(workers), timeout=300) == 0, workers.log(1)
    for job_id in ids:
        records = assert_records_agree(settings, job_id, trials=4)
        assert records.job.state == "succeeded" and {t.state.name for t in records.trials} == {"COMPLETE"}


def _start_plain(workers: Workers) -> int:
    workers.start("--until-idle", "--concurrency", "2")
    return len(workers.processes) - 1


GATED = """
import os
import time

def objective(params, ctx):
    while not os.path.exists(GATE):  # held until the test opens the gate: the job cannot end early
        time.sleep(0.1)
    ctx.report(loss=(params["x"] - 0.3) ** 2, step=1)
"""


def test_an_until_idle_runner_waits_out_a_killed_runners_lease_and_finishes_its_job(
    automl_home: Path, tmp_path: Path, workers: Workers
) -> None:
    """Idle means no job queued or running anywhere: a runner killed with SIGKILL leaves its job
    ``running`` until its lease expires, and an ``--until-idle`` runner must wait for that, then
    reclaim the job, not exit 0 with the job stuck (it did, 14 s after the kill)."""
    from automl.service import open_job_store

    settings = settings_for(automl_home)
    gate = tmp_path / "gate"
    job_id = submit(
        settings, job_spec("orphan", objective_module(tmp_path, GATED, GATE=str(gate)), trials=1, tracking=NO_PLOTS), tmp_path
    )
    store = open_job_store(settings)
    holder = workers.start("--lease", "3")
    wait_for(lambda: store.get(job_id).state == "running", 120, "the first runner to claim the job")

    idle = workers.start("--until-idle", "--lease", "3")
    wait_for(lambda: idle.poll() is not None or "not idle yet" in workers.log(1), 120, "the --until-idle runner to look")
    assert idle.poll() is None, (
        f"the --until-idle runner exited ({idle.returncode}) while job {job_id} was running:\n{workers.log(1)}"
    )
    assert job_id in workers.log(1), "it says which job it waits for"
    kill_session(holder)  # SIGKILL to the runner and everything it started
    assert store.get(job_id).state == "running", "the dead runner's lease still holds the job"
    gate.touch()

    assert workers.wait(1, timeout=240) == 0, workers.log(1)
    records = assert_records_agree(settings, job_id, trials=1)
    assert records.job.state == "succeeded", records.job.error
    assert records.event_kinds().count("reclaimed") == 1 and records.job.attempts == 2


def test_a_job_the_cluster_cannot_run_fails_with_one_line_in_the_runner_log(
    automl_home: Path, tmp_path: Path, workers: Workers
) -> None:
    """The reason is logged as the job row has it; the traceback only with ``automl --debug worker``."""
    from automl.service import open_job_store

    settings = settings_for(automl_home)
    ref = objective_module(tmp_path, QUICK, SLEEP=0.1)
    store = open_job_store(settings)
    for index, debug in enumerate((False, True)):
        job_id = submit(settings, job_spec(f"greedy{index}", ref, trials=1, resources={"gpus_per_trial": 1000}), tmp_path)
        workers.start("--until-idle", debug=debug)
        assert workers.wait(index) == 0, workers.log(index)
        job = store.get(job_id)
        assert job.state == "failed" and "resources.gpus_per_trial" in (job.error or ""), job.error
        log = workers.log(index)
        assert f"job {job_id} failed: {job.error}\n" in log, log
        assert ("Traceback" in log) is debug, log
