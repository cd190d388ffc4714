"""Cluster mode: with RAY_ADDRESS, `automl run` drives a real two-node Ray cluster (`ray start`
head + worker node, tests/raycluster.py) and the job's trials run on both nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import yaml

pytestmark = pytest.mark.slow

TRIALS = 4

# Each trial writes the id of the Ray node it runs on into <test folder>/nodes/<trial number>.json
# (the nodes share this machine's filesystem; an environment variable of the driver would not
# reach the trial: Ray workers inherit their raylet's environment). The folder is written into
# the module: the job's code travels as a package, so the module's own folder is a copy of it.
OBJECTIVE = textwrap.dedent(
    """
    import json
    import os
    import time
    from pathlib import Path

    import ray

    OUT = Path(NODES_DIR)


    def objective(params, ctx):
        started = time.time()
        time.sleep(1.0)  # long enough for two trials to overlap, so both nodes get one
        OUT.mkdir(exist_ok=True)
        record = {
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "started": started,
            "ended": time.time(),
        }
        (OUT / f"{ctx.trial_number}.json").write_text(json.dumps(record))
        return (params["x"] - 0.5) ** 2
    """
)


def test_cli_run_spreads_trials_over_a_two_node_cluster(tmp_path: Path, ray_cluster) -> None:
    (tmp_path / "nodes_objective.py").write_text(OBJECTIVE.replace("NODES_DIR", repr(str(tmp_path / "nodes"))))
    spec = tmp_path / "cluster.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "cluster-nodes",
                "objective": "nodes_objective:objective",
                "space": {"x": {"type": "float", "low": -1.0, "high": 1.0}},
                "metric": "loss",
                "mode": "min",
                "sampler": {"name": "random"},
                "scheduler": {"name": "fifo"},
                "budget": {"trials": TRIALS, "max_epochs": 1},
                "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
                "seed": 11,
                "tracking": {"plots": False},  # `automl run` would wait for them at exit; not what this checks
            }
        )
    )
    home = tmp_path / "automl-home"
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "AUTOML_DB_URL", "AUTOML_STORAGE_URL", "AUTOML_SPACES_PATH")
    }
    base["AUTOML_HOME"] = str(home)
    env = ray_cluster.driver_env(base)
    assert env["RAY_ADDRESS"] == ray_cluster.address

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "automl.cli", "run", str(spec), "--no-progress", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, f"exit {proc.returncode} after {took:.0f}s\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    # The CLI's own verdict: the job succeeded with every trial COMPLETE.
    output = json.loads(proc.stdout)
    assert output["job"]["state"] == "succeeded", output["job"]
    result = output["result"]
    assert result["states"] == {"COMPLETE": TRIALS}, result["states"]
    assert sorted(t["number"] for t in result["trials"]) == list(range(TRIALS))
    assert all(t["state"] == "COMPLETE" and t["value"] is not None for t in result["trials"])

    # The Optuna study in AUTOML_HOME agrees.
    storage = f"sqlite:///{home / 'studies.db'}"
    study = optuna.load_study(study_name=result["study_name"], storage=storage)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * TRIALS

    # Where the trials ran: every trial on a node of this cluster, and both nodes used. A driver
    # that had started its own local Ray instead would show a node id the cluster does not have.
    cluster_nodes = set(ray_cluster.alive_node_ids())
    assert cluster_nodes == set(ray_cluster.node_ids) and len(cluster_nodes) == 2
    records = {int(p.stem): json.loads(p.read_text()) for p in (tmp_path / "nodes").glob("*.json")}
    assert sorted(records) == list(range(TRIALS)), f"trials that recorded their node: {sorted(records)}"
    used = {r["node_id"] for r in records.values()}
    assert used <= cluster_nodes, f"trials ran on {used}, not all on the cluster's nodes {cluster_nodes}"
    assert used == cluster_nodes, f"trials ran only on {used}; the cluster has {cluster_nodes}"


# automl.search from a script whose objective imports a module of its own project: on a cluster,
# the project's folder travels as Ray's working_dir (the nodes have their own HOME and working
# directory, tests/raycluster.py), so `import helper` works on every node (the objective itself is
# pickled by value, but a module it uses is imported where it runs).
API_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import automl

    # The project is on this driver's path only to import the objective: Ray hands its workers the
    # driver's sys.path as it is at ray.init, which on this one machine would reach the project
    # folder itself and hide whether the package travelled.
    sys.path.insert(0, PROJECT)
    from train import objective

    sys.path.remove(PROJECT)

    result = automl.search(
        objective,
        {"x": {"type": "float", "low": -1.0, "high": 1.0}},
        n_trials=4,
        max_steps=1,
        name="api-travels",
        sampler="random",
        scheduler="fifo",
        max_concurrent=2,
        register_model=False,
        plots=False,
    )
    from mlflow import MlflowClient

    client = MlflowClient(result.tracking_uri)
    runs = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    tags = client.get_run(result.parent_run_id).data.tags
    json.dump({"states": result.state_counts, "nodes": sorted({r.data.metrics.get("on_worker") for r in runs}),
               "from_project": sorted({r.data.metrics.get("from_project") for r in runs}),
               "code": tags.get("automl.code_sha256")}, sys.stdout)
    """
)
API_TRAIN = textwrap.dedent(
    """
    import time

    import helper
    import ray

    WORKER_NODE = {worker!r}
    PROJECT = {project!r}


    def objective(params, ctx):
        time.sleep(1.0)
        on_worker = 1.0 if ray.get_runtime_context().get_node_id() == WORKER_NODE else 0.0
        # Ray also hands its workers the driver's sys.path, which on this one machine reaches the
        # project folder itself: the helper must come from the package that travelled instead.
        from_project = 1.0 if helper.__file__.startswith(PROJECT) else 0.0
        ctx.report(loss=(params["x"] - helper.offset) ** 2, on_worker=on_worker, from_project=from_project)
    """
)


def test_the_python_api_ships_the_objective_s_project_to_the_cluster(tmp_path: Path, ray_cluster) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(API_TRAIN.format(worker=ray_cluster.worker_node_id, project=str(project)))
    (project / "helper.py").write_text("offset = 0.25\n")
    (tmp_path / "search.py").write_text(API_SCRIPT.replace("PROJECT", repr(str(project)), 2))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOML_", "MLFLOW_"))}
    env = ray_cluster.driver_env({**base, "AUTOML_HOME": str(tmp_path / "home")})
    proc = subprocess.run(
        [sys.executable, "search.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["states"] == {"COMPLETE": 4}, out
    assert out["nodes"] == [0.0, 1.0], "trials ran on both nodes, each importing the project's helper module"
    assert out["from_project"] == [0.0], "the helper module came from the package that travelled"
    assert out["code"] and len(out["code"]) == 64, "the run names the code it ran"
