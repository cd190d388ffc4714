"""A job's data file travels with it (issue 16, item 2), and ``automl rerun`` runs the same code and
data again (item 4): real jobs through the CLI, on the session's Ray, with the submitter's folder
deleted before a runner takes the job, and a bucket on a real S3-protocol server (moto, loopback).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from automl.cli import app
from automl.settings import resolve_settings
from automl.store import open_store
from workers.data_cache import DataFetchError, DataRef, local_copy

pytestmark = pytest.mark.slow
# Each job here runs in a state directory whose MLflow store is made (``tracked_home``): these tests are about the data.

# The objective reads the job's data file where the trial runs (ctx.data_path) and a helper
# module of its own project: both must come with the job, not from the submitter's folder.
TRAIN = """
import pandas as pd

import helper


def objective(params, ctx):
    frame = pd.read_csv(ctx.data_path)
    return abs(params["x"] - helper.centre(frame))
"""
HELPER = "def centre(frame):\n    return float(frame['y'].mean())\n"


def submit(spec_file: Path) -> str:
    result = CliRunner().invoke(app, ["submit", str(spec_file), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["id"]


def run_queue() -> None:
    result = CliRunner().invoke(app, ["worker", "--until-idle", "--poll", "0.2"])
    assert result.exit_code == 0, result.output


def iris_table(path: Path) -> Path:
    x, y = load_iris(return_X_y=True, as_frame=True)
    frame = x.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = y
    frame.to_csv(path, index=False)
    return path


@pytest.mark.usefixtures("tracked_home")
def test_an_uploaded_data_file_and_the_code_travel_and_a_rerun_uses_the_same(
    tmp_path: Path, automl_home: Path, ray_session: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "helper.py").write_text(HELPER)
    (project / "data.csv").write_text("y\n" + "0.25\n0.75\n" * 10)
    spec = {
        "name": "data-travels",
        "objective": "train:objective",
        "data": "data.csv",
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "metric": "loss",
        "sampler": {"name": "random"},
        "scheduler": {"name": "fifo"},
        "budget": {"trials": 2, "max_epochs": 1},
        "tracking": {"plots": False},
    }
    (project / "job.yaml").write_text(yaml.safe_dump(spec))
    data_sha = hashlib.sha256((project / "data.csv").read_bytes()).hexdigest()
    monkeypatch.chdir(tmp_path)
    job_id = submit(project / "job.yaml")
    shutil.rmtree(project)
    run_queue()

    store = open_store(resolve_settings().db_url)
    job = store.get(job_id)
    assert job.state == "succeeded" and job.trials_finished == 2, job
    assert job.data_sha256 == data_sha and job.data_source == str(project / "data.csv")
    assert job.code_sha256 is not None
    # The Dataset column of the MLflow UI: the data file by name, its hash as the digest.
    settings = resolve_settings()
    run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(job.mlflow_run_id)
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert (dataset.name, dataset.digest) == ("data.csv", data_sha[:16])
    assert run.data.tags["automl.data_sha256"] == data_sha and run.data.tags["automl.code_sha256"] == job.code_sha256

    result = CliRunner().invoke(app, ["rerun", job_id])
    assert result.exit_code == 0, result.output
    rerun_id = result.stdout.strip()
    said = " ".join(result.stderr.split())  # as one line, however the terminal wrapped it
    assert f"the same spec, code {job.code_sha256[:12]}, data {data_sha[:12]}" in said, said
    assert f"cluster: job {job_id} ran on 1 node(s)" in said, said
    run_queue()
    again = store.get(rerun_id)
    assert again.state == "succeeded" and again.trials_finished == 2, again
    assert (again.code_sha256, again.data_sha256) == (job.code_sha256, job.data_sha256)
    assert any(e.kind == "rerun" and job_id in e.message for e in store.events(rerun_id))
    status = " ".join(CliRunner().invoke(app, ["status", rerun_id, "--wide"]).stdout.split())
    assert f"code {job.code_sha256[:12]}" in status and f"data {job.data_source} ({data_sha[:12]})" in status, status


@pytest.mark.usefixtures("tracked_home")
def test_a_trainer_dataset_in_a_bucket_is_read_where_the_trials_run_and_a_changed_object_is_named(
    tmp_path: Path, automl_home: Path, ray_session: None, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    table = iris_table(tmp_path / "iris.csv")
    key = f"data-{tmp_path.name}/iris.csv"
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=table.read_bytes())
    uri = f"s3://{s3_server.bucket}/{key}"
    spec = {
        "name": "bucket-data",
        "trainer": {"name": "mlp", "dataset": uri, "target": "species"},
        "space": "mlp-small",
        "sampler": {"name": "random"},
        "scheduler": {"name": "fifo"},
        "budget": {"trials": 1, "max_epochs": 1},
        "tracking": {"plots": False, "register_model": False},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)
    job_id = submit(tmp_path / "job.yaml")
    run_queue()
    store = open_store(resolve_settings().db_url)
    job = store.get(job_id)
    assert job.state == "succeeded", (job, [e.message for e in store.events(job_id)])
    assert (job.data_source, job.data_sha256) == (uri, hashlib.sha256(table.read_bytes()).hexdigest())
    assert not store.blobs.has(job.data_sha256), "a bucket's object stays in the bucket"

    # The object changes: a rerun says so and trains on it as it is now.
    changed = pd.read_csv(table).iloc[:120]
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=changed.to_csv(index=False).encode())
    result = CliRunner().invoke(app, ["rerun", job_id, "--json"])
    assert result.exit_code == 0, result.output
    rerun = json.loads(result.stdout)
    (note,) = [n for n in rerun["differences"] if n.startswith("data: ")]
    assert f"{uri} changed since job {job_id}" in note and job.data_sha256[:12] in note, note
    assert rerun["data_sha256"] != job.data_sha256


def test_a_fetched_copy_must_have_the_hash_the_job_recorded(
    tmp_path: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOML_DATA_CACHE", str(tmp_path / "cache"))
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    key = f"hash-{tmp_path.name}/d.csv"
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key, Body=b"y\n1\n")
    uri = f"s3://{s3_server.bucket}/{key}"
    good = hashlib.sha256(b"y\n1\n").hexdigest()
    path = local_copy(DataRef("d.csv", good, uri))
    assert Path(path).read_bytes() == b"y\n1\n" and Path(path).parent.name == good
    with pytest.raises(DataFetchError, match="changed since"):
        local_copy(DataRef("d.csv", "0" * 64, uri))
    assert not (tmp_path / "cache" / ("0" * 64) / "d.csv").exists(), "a copy that does not match is not kept"
    # The endpoint travels with the reference for a node whose environment names none.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    other = hashlib.sha256(b"y\n2\n").hexdigest()
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key, Body=b"y\n2\n")
    assert Path(local_copy(DataRef("d.csv", other, uri, endpoint=s3_server.endpoint_url))).read_bytes() == b"y\n2\n"


@pytest.mark.usefixtures("tracked_home")
def test_the_python_api_hands_the_spec_s_data_file_to_the_objective(tmp_path: Path, automl_home: Path, ray_session: None) -> None:
    import automl

    project = tmp_path / "api-project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "helper.py").write_text(HELPER)
    (project / "data.csv").write_text("y\n0.5\n")
    spec = {
        "name": "api-data",
        "objective": "train:objective",
        "data": "data.csv",
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "metric": "loss",
        "sampler": {"name": "random"},
        "scheduler": {"name": "fifo"},
        "budget": {"trials": 1, "max_epochs": 1},
        "tracking": {"plots": False},
    }
    (project / "job.yaml").write_text(yaml.safe_dump(spec))
    result = automl.run_job(project / "job.yaml")
    assert result.state_counts == {"COMPLETE": 1}, result.trials
    run = MlflowClient(tracking_uri=result.tracking_uri).get_run(result.parent_run_id)
    assert run.data.tags["automl.data_sha256"] == hashlib.sha256(b"y\n0.5\n").hexdigest()
