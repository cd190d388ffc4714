"""A trial's process dies (SIGKILL of its Ray worker), and a whole Ray worker node dies in a
two-node cluster: Tune retries the trials (``max_retries``), from their last checkpoint where
there is one, and the job ends with every trial COMPLETE, recorded once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from faultkit import job_spec, objective_module, service_env, wait_for
from mlflow import MlflowClient

import automl

pytestmark = pytest.mark.slow


@pytest.mark.usefixtures("tracked_home")  # its MLflow store made already: not a first run
def test_sigkilled_trial_process_is_retried_from_its_checkpoint(automl_home: Path, ray_session: None, tmp_path: Path) -> None:
    pids, resumed = tmp_path / "pids", tmp_path / "resumed.txt"
    pids.mkdir()

    def objective(params: dict, ctx) -> None:  # runs in a Ray worker
        import torch
        from ray import tune

        start = 1
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:  # a retry: go on from the last step the checkpoint holds
            with checkpoint.as_directory() as folder, open(os.path.join(folder, "model_info.json")) as handle:
                start = json.load(handle)["step"] + 1
            with open(resumed, "a") as handle:
                handle.write(f"{ctx.trial_number} {start}\n")
        for step in range(start, ctx.max_epochs + 1):
            time.sleep(0.3)
            ctx.save_model(torch.nn.Linear(1, 1), step=step)
            ctx.report(loss=(params["x"] - 0.5) ** 2 + 1.0 / step, step=step)
            marker = pids / f"{ctx.trial_number}-{step}"
            marker.with_suffix(".tmp").write_text(str(os.getpid()))
            marker.with_suffix(".tmp").rename(marker)  # whole or absent: the killer reads it while the trial runs

    killed: list[int] = []

    def kill_trial_zero_after_step_two() -> None:
        marker = pids / "0-2"
        deadline = time.monotonic() + 180
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if marker.exists():
            pid = int(marker.read_text())
            os.kill(pid, signal.SIGKILL)  # the trial's Ray worker process, mid-trial
            killed.append(pid)

    killer = threading.Thread(target=kill_trial_zero_after_step_two, daemon=True)
    killer.start()
    result = automl.search(
        objective,
        {"x": {"type": "float", "low": 0, "high": 1}},
        n_trials=2,
        max_steps=5,
        metric="loss",
        name="sigkill",
        sampler="random",
        scheduler="fifo",
        max_concurrent=1,
        max_retries=1,
        seed=4,
        plots=False,  # seconds of CPU, and not what this test checks (tests/automl/tracking/test_plots.py does)
    )
    killer.join(timeout=5)
    assert killed, "the trial's worker process was never seen"
    assert [t.state for t in result.trials] == ["COMPLETE", "COMPLETE"]
    # Resumed from the checkpoint it saved at step 2 or later, not from step 1.
    lines = [line.split() for line in resumed.read_text().splitlines()]
    assert len(lines) == 1 and lines[0][0] == "0" and int(lines[0][1]) >= 3, lines
    assert (pids / "0-5").exists() and int((pids / "0-5").read_text()) != killed[0], "finished in a new process"
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{automl_home / 'studies.db'}")
    assert sorted(study.trials[0].intermediate_values) == [1, 2, 3, 4, 5]
    run = MlflowClient(tracking_uri=result.tracking_uri).get_run(result.run_ids[0])
    assert run.data.tags["automl.retries"] == "1" and run.info.status == "FINISHED"
    assert len(result.run_ids) == 2


NODE_OBJECTIVE = """
import json, os, time
from pathlib import Path
import ray

def objective(params, ctx):
    record = Path(OUT) / f"{ctx.trial_number}-{os.getpid()}.json"
    record.with_suffix(".tmp").write_text(json.dumps({"node": ray.get_runtime_context().get_node_id(), "trial": ctx.trial_number}))
    record.with_suffix(".tmp").rename(record)  # whole or absent: the test reads these while trials run
    for step in range(1, ctx.max_epochs + 1):
        time.sleep(1.0)
        ctx.report(loss=(params["x"] - 0.5) ** 2 + 1.0 / step, step=step)
"""


@pytest.mark.usefixtures("tracked_home")  # its MLflow store made already: not a first run
def test_a_dying_worker_node_has_its_trials_retried_on_the_head_node(automl_home: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import raycluster

    out = tmp_path / "nodes"
    out.mkdir()
    ref = objective_module(tmp_path, NODE_OBJECTIVE, OUT=str(out))
    spec = job_spec(
        "node-dies",
        ref,
        trials=3,
        max_retries=2,
        budget={"max_epochs": 4},
        resources={"cpus_per_trial": 1, "max_concurrent": 2},
        tracking={"plots": False},  # `automl run` would wait for them before exiting; not what this test checks
    )
    job_file = tmp_path / "node.yaml"
    job_file.write_text(yaml.safe_dump(spec))
    cluster = raycluster.start_cluster()
    try:
        head, worker = cluster.node_ids
        run = subprocess.Popen(
            [sys.executable, "-m", "automl.cli", "run", str(job_file), "--no-progress", "--json"],
            cwd=tmp_path,
            env=cluster.driver_env(service_env(automl_home)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def on_worker_node() -> bool:
            return any(json.loads(p.read_text())["node"] == worker for p in out.glob("*.json"))

        wait_for(on_worker_node, 180, "a trial running on the worker node")
        cluster.kill_worker_node()
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    finally:
        cluster.stop()
    # Ray's driver prints "(raylet) The node with node id ... has been marked dead ..." on its
    # stdout; `automl run --json` sends that to stderr, so stdout is the JSON document alone.
    output = json.loads(stdout)
    assert output["job"]["state"] == "succeeded", output["job"]
    assert output["result"]["states"] == {"COMPLETE": 3}, output["result"]["states"]
    starts = [json.loads(p.read_text()) for p in out.glob("*.json")]
    victims = {s["trial"] for s in starts if s["node"] == worker}
    assert victims, starts
    for trial in victims:  # every trial the dead node ran was started again, on the head node
        assert any(s["trial"] == trial and s["node"] == head for s in starts), starts
