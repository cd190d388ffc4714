"""Jobs that travel (issue 16): a custom objective, its helper module, its data file and its pip
requirements reach a two-node Ray cluster that shares no folder with the submitter, with PBT's
checkpoints in a bucket, through a runner killed with -9 and a second runner that resumes the job.

Nothing here shares a path: the submitter, each runner and each Ray node (tests/raycluster.py)
has its own working directory, ``HOME`` and ``AUTOML_HOME``. What they share is what a team
shares: the job database, the Optuna storage (PostgreSQL), an MLflow server whose artifacts are
in the bucket, and the bucket (a real S3-protocol server on loopback). The package is installed;
the user's code is not, and the submitter's folder is deleted right after ``automl submit``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from mlflowserver import start_server, stop_server

from automl.store import open_store

pytestmark = pytest.mark.slow

TRIALS = 4
LEASE_S = 6
# What the project's objective reads: its helper module, its CSV through ctx.data_path, and a
# package only its requirements file names (the venv lacks it; each node installs it for the job).
TRAIN = textwrap.dedent(
    """
    import time

    import inflection
    import pandas as pd
    import ray

    from helper import scale

    WORKER_NODE = {worker_node!r}


    def objective(params, ctx):
        target = float(pd.read_csv(ctx.data_path)["y"].mean())
        on_worker = 1.0 if ray.get_runtime_context().get_node_id() == WORKER_NODE else 0.0
        height = (ctx.load_state() or {{"height": 0.0}})["height"]
        for step in range(ctx.step + 1, ctx.max_epochs + 1):
            height += params["rate"] * scale()
            ctx.save_state({{"height": height}})
            time.sleep(0.4)
            ctx.report(
                loss=abs(target - height), on_worker=on_worker, inflected=len(inflection.underscore("DataFrame")), step=step
            )
    """
)
HELPER = "def scale():\n    return 2.0\n"
CSV = "x,y\n" + "".join(f"{i},{1.0 + (i % 3) * 0.1}\n" for i in range(30))


def run_cli(args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "automl.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def own_place(root: Path, name: str, base: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A working directory with its own HOME and AUTOML_HOME, and ``base`` for everything else."""
    place = root / name
    (place / "home").mkdir(parents=True)
    env = {**base, "HOME": str(place / "home"), "AUTOML_HOME": str(place / "automl")}
    env.pop("AUTOML_DATA_CACHE", None)
    return place, env


def events(store: Any, job_id: str, studies_db: str | None = None) -> str:
    """The job's events, and its trials' fail reasons, for a failure's message."""
    lines = [f"{e.kind}: {e.message}" for e in store.events(job_id, limit=100)]
    if studies_db is not None:
        study = optuna.load_study(study_name=store.get(job_id).study_name, storage=studies_db)
        lines += [f"trial {t.number} {t.state.name}: {t.user_attrs}" for t in study.trials if t.state.name == "FAIL"]
    return "\n".join(lines)


def driver_logs(*places: Path) -> str:
    """The job drivers' logs of the runners that ran here (for a failure's message)."""
    texts = [
        f"--- {p} ---\n{p.read_text(errors='replace')[-4000:]}" for place in places for p in place.glob("automl/drivers/*.log")
    ]
    return "\n".join(texts) or "(no driver log)"


def test_a_job_travels_to_a_cluster_that_shares_no_folder_and_survives_its_runner(
    tmp_path: Path, ray_cluster: Any, s3_server: Any, postgres_server: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    jobs_db = postgres_server.new_database(f"travel_jobs_{tag}")
    studies_db = postgres_server.new_database(f"travel_studies_{tag}")
    tracking_db = postgres_server.new_database(f"travel_mlflow_{tag}")
    tracking_uri, mlflow_server = start_server(
        tmp_path, backend=tracking_db, artifacts=s3_server.uri(f"mlflow-{tag}"), env=s3_server.env
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOML_", "MLFLOW_", "RAY_ADDRESS"))}
    shared = {**clean, **s3_server.env, "AUTOML_DB_URL": jobs_db}
    runner_env = {
        **ray_cluster.driver_env(shared),
        "AUTOML_STORAGE_URL": studies_db,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "AUTOML_TRIAL_STORAGE": s3_server.uri(f"trials-{tag}"),
    }
    try:
        # -- the submitter's project, submitted and then deleted --------------------------------
        submitter, submit_env = own_place(tmp_path, "submitter", shared)
        project = submitter / "project"
        project.mkdir()
        (project / "train.py").write_text(TRAIN.format(worker_node=ray_cluster.worker_node_id))
        (project / "helper.py").write_text(HELPER)
        (project / "data.csv").write_text(CSV)
        (project / "requirements.txt").write_text("inflection==0.5.1\n")
        spec = {
            "name": f"travel-{tag}",
            "objective": "train:objective",
            "code": {"requirements": "requirements.txt"},
            "data": "data.csv",
            "space": {"rate": {"type": "float", "low": 0.05, "high": 0.5, "log": True}},
            "metric": "loss",
            "mode": "min",
            "sampler": {"name": "random"},
            "scheduler": {"name": "pbt", "options": {"perturbation_interval": 1, "quantile_fraction": 0.5}},
            "budget": {"trials": TRIALS, "max_epochs": 3},
            "resources": {"cpus_per_trial": 1},
            "tracking": {"register_model": False, "plots": False},
            "seed": 3,
        }
        (project / "job.yaml").write_text(yaml.safe_dump(spec))
        submitted = run_cli(["submit", "job.yaml", "--json"], env=submit_env, cwd=project)
        assert submitted.returncode == 0, submitted.stderr
        job_id = json.loads(submitted.stdout)["id"]
        shutil.rmtree(project)  # nothing of the submitter's disk is needed from here on

        store = open_store(jobs_db)
        job = store.get(job_id)
        assert job.code_sha256 and job.data_sha256 and job.data_source.endswith("data.csv")

        # -- the first runner, killed with -9 mid-job -------------------------------------------
        first, first_env = own_place(tmp_path, "runner-1", runner_env)
        worker = [sys.executable, "-m", "automl.cli", "worker", "--until-idle", "--lease", str(LEASE_S), "--poll", "0.5"]
        with (first / "worker.log").open("ab") as log:
            runner = subprocess.Popen(
                worker, env=first_env, cwd=first, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 240
        while store.get(job_id).trials_finished < 2:
            assert runner.poll() is None, (
                f"runner 1 exited early:\n{(first / 'worker.log').read_text()}\n{events(store, job_id, studies_db)}"
            )
            assert time.monotonic() < deadline, f"no 2 trials after 240 s:\n{driver_logs(first)}"
            time.sleep(0.5)
        os.kill(runner.pid, signal.SIGKILL)  # its job's driver dies with it (PR_SET_PDEATHSIG)
        runner.wait(timeout=30)
        before = store.get(job_id)
        assert before.state == "running" and before.trials_finished < TRIALS, before

        # -- a second runner, elsewhere again, resumes it ---------------------------------------
        second, second_env = own_place(tmp_path, "runner-2", runner_env)
        resumed = subprocess.run(worker, env=second_env, cwd=second, capture_output=True, text=True, timeout=420, check=False)
        assert resumed.returncode == 0, f"{resumed.stderr[-3000:]}\n{driver_logs(second)}"
        final = store.get(job_id)
        assert final.state == "succeeded", f"{final}\n{driver_logs(first, second)}"
        assert final.trials_finished == TRIALS
        study = optuna.load_study(study_name=final.study_name, storage=studies_db)
        assert sorted(t.number for t in study.trials) == list(range(TRIALS)), "exactly the budget: none lost, none doubled"
        assert all(t.state.is_finished() for t in study.trials)
        assert any(e.kind == "resumed" for e in store.events(job_id, limit=100))

        # -- what ran where, and what MLflow says it ran on -------------------------------------
        client = MlflowClient(tracking_uri=tracking_uri)
        parent = client.get_run(final.mlflow_run_id)
        trial_runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert {r.data.metrics.get("on_worker") for r in trial_runs} == {0.0, 1.0}, "trials ran on both nodes"
        assert all(r.data.metrics.get("inflected") == len("data_frame") for r in trial_runs if "inflected" in r.data.metrics)
        assert any(k.endswith("/trial_state.pt") for k in s3_server.keys(f"trials-{tag}")), "PBT's checkpoints are in the bucket"
        assert parent.data.tags["automl.code_sha256"] == final.code_sha256
        assert parent.data.tags["automl.data_sha256"] == final.data_sha256
        (dataset,) = [d.dataset for d in parent.inputs.dataset_inputs]
        assert (dataset.name, dataset.digest) == ("data.csv", final.data_sha256[:16])
        assert [a.path for a in client.list_artifacts(parent.info.run_id, "code")] == [f"code/{final.code_sha256[:12]}.zip"]

        # -- the same job again, from yet another place -----------------------------------------
        elsewhere, elsewhere_env = own_place(tmp_path, "elsewhere", shared)
        again = run_cli(["rerun", job_id, "--json"], env=elsewhere_env, cwd=elsewhere)
        assert again.returncode == 0, again.stderr
        rerun = json.loads(again.stdout)
        assert rerun["rerun_of"] == job_id and rerun["id"] != job_id
        assert (rerun["code_sha256"], rerun["data_sha256"]) == (final.code_sha256, final.data_sha256)
        assert any(note.startswith("cluster: ") for note in rerun["differences"]), rerun["differences"]
        status = run_cli(["status", rerun["id"]], env=elsewhere_env, cwd=elsewhere)
        assert f"code {final.code_sha256[:12]}" in status.stdout, status.stdout
    finally:
        stop_server(mlflow_server)
