"""Load: many small jobs from several submitter processes against two runner processes for a few
minutes, some cancelled on the way; afterwards every job is final, every trial accounted for,
and the job store, the Optuna study and MLflow agree on every job.

Not part of the default run (``-m "not soak"`` in pyproject's addopts). Run it with::

    .venv/bin/python -m pytest -m soak tests/faults/test_fault_soak.py -s

``AUTOML_SOAK_S`` sets how long the submitters submit (default 120 s); the figures are printed
and, with ``AUTOML_SOAK_REPORT=path.json``, written as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from faultkit import Workers, assert_records_agree, job_spec, objective_module, service_env, settings_for, wait_for

pytestmark = pytest.mark.soak

SUBMITTERS = 3
RUNNERS = 2

OBJECTIVE = """
import time

def objective(params, ctx):
    for step in range(1, ctx.max_epochs + 1):
        time.sleep(0.05)
        ctx.report(loss=(params["x"] - 0.3) ** 2 + 1.0 / step, step=step)
"""

# One submitter process: submits small jobs (2-4 trials) until its time is up, cancels every
# fifth right after submitting it, and prints the ids it submitted and cancelled as JSON.
SUBMITTER = textwrap.dedent(
    """
    import json, random, sys, time
    from automl.service import check_job_file, enqueue, open_job_store
    from automl.settings import resolve_settings

    seconds, index, job_file = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = random.Random(index)
    store = open_job_store(resolve_settings())
    checked = check_job_file(job_file)
    submitted, cancelled = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        trials = rng.randint(2, 4)
        spec = checked.spec.model_copy(update={
            "name": f"soak-{index}-{len(submitted)}",
            "budget": checked.spec.budget.model_copy(update={"trials": trials}),
            "seed": rng.randint(0, 1000),
        })
        job = enqueue(store, type(checked)(spec, checked.base_dir))
        submitted.append(job.id)
        if len(submitted) % 5 == 0:
            try:
                store.cancel(job.id)
                cancelled.append(job.id)
            except Exception:  # already finished: fine
                pass
        time.sleep(rng.uniform(2.0, 6.0))
    print(json.dumps({"submitted": submitted, "cancelled": cancelled}))
    """
)


def test_soak_many_jobs_two_runners_several_submitters(automl_home: Path, tmp_path: Path) -> None:
    from automl.service import open_job_store

    seconds = float(os.environ.get("AUTOML_SOAK_S", "120"))
    settings = settings_for(automl_home)
    env = service_env(automl_home)
    ref = objective_module(tmp_path, OBJECTIVE)
    job_file = tmp_path / "soak.yaml"
    job_file.write_text(yaml.safe_dump(job_spec("soak", ref, trials=2, budget={"max_epochs": 3})))
    (tmp_path / "submitter.py").write_text(SUBMITTER)
    # Make the state (databases, migrations) once, so the processes below do not race to create it.
    ready = subprocess.run([sys.executable, "-m", "automl.cli", "list"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert ready.returncode == 0, ready.stderr

    started = time.monotonic()
    workers = Workers(tmp_path, env)
    try:
        for _ in range(RUNNERS):
            workers.start("--concurrency", "2", "--lease", "15")
        submitters = [
            subprocess.Popen(
                [sys.executable, str(tmp_path / "submitter.py"), str(seconds), str(i), str(job_file)],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(SUBMITTERS)
        ]
        outputs = [p.communicate(timeout=seconds + 300) for p in submitters]
        for process, (_out, err) in zip(submitters, outputs, strict=True):
            assert process.returncode == 0, err
        sent = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        submitted = [j for s in sent for j in s["submitted"]]
        cancelled = {j for s in sent for j in s["cancelled"]}
        store = open_job_store(settings)
        wait_for(
            lambda: all(store.get(j).is_final for j in submitted),
            max(900, 8 * seconds),
            "every job to reach a final state",
            poll=2,
        )
        drained = time.monotonic()
        for process in workers.processes:
            process.send_signal(signal.SIGTERM)
        for index in range(RUNNERS):
            assert workers.wait(index, timeout=120) == 0, workers.log(index)
    finally:
        workers.stop_all()

    jobs = [store.get(j) for j in submitted]
    states = {state: sum(1 for j in jobs if j.state == state) for state in {j.state for j in jobs}}
    errors = sorted({(j.error or "")[:300] for j in jobs if j.state == "failed"})
    assert set(states) <= {"succeeded", "cancelled"}, (states, errors[:5])
    trials = 0
    for job in jobs:
        if job.state == "succeeded":
            trials += len(assert_records_agree(settings, job.id, trials=job.trials_total).trials)
        elif job.mlflow_run_id:  # cancelled while running: whatever ran is recorded alike
            trials += len(assert_records_agree(settings, job.id).trials)
        else:
            assert job.id in cancelled and job.attempts == 0, "only a job cancelled in the queue never ran"
    assert {j.id for j in jobs if j.state == "cancelled"} <= cancelled
    latencies = sorted((j.finished_at - j.created_at).total_seconds() for j in jobs if j.state == "succeeded")
    figures = {
        "submit_seconds": seconds,
        "submitters": SUBMITTERS,
        "runners": RUNNERS,
        "jobs": len(jobs),
        "states": states,
        "trials_recorded": trials,
        "drain_seconds_after_submitting": round(drained - started - seconds, 1),
        "total_seconds": round(drained - started, 1),
        "trials_per_minute": round(trials / ((drained - started) / 60), 1),
        "job_latency_s": {
            "median": round(statistics.median(latencies), 1) if latencies else None,
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1) if latencies else None,
            "max": round(latencies[-1], 1) if latencies else None,
        },
        "load_average": os.getloadavg(),
    }
    print("soak figures:", json.dumps(figures, indent=2))
    if os.environ.get("AUTOML_SOAK_REPORT"):
        Path(os.environ["AUTOML_SOAK_REPORT"]).write_text(json.dumps(figures, indent=2))
    assert len(jobs) >= SUBMITTERS, "the submitters submitted"
