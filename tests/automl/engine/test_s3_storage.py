"""Checkpoints and artifacts in a bucket: Tune's trial storage and the MLflow server's artifacts on
a real S3-protocol server (moto's, on loopback: the ``s3_server`` fixture), nothing on a shared disk.

Each search is a real one, on the session's Ray: a PBT population that clones its members from
checkpoints in the bucket, a trial whose process dies and whose retry resumes from its checkpoint
in the bucket, the best model read from a checkpoint in the bucket and logged to MLflow, and an
MLflow server (``mlflow/start-server.sh``) that keeps a job's artifacts in the bucket. Every test
checks the checkpoints are in the bucket and not on this machine's disk. The objectives are tiny
(a number grows each step), so the time goes to what is tested: Tune, the bucket, MLflow.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from mlflowserver import start_server, stop_server

import automl
from automl.engine.pbt import EXPLOITS_ATTR
from automl.errors import AutomlError, InputError
from automl.settings import TRIAL_STORAGE_ENV, open_trial_storage, resolve_settings

REPO = Path(__file__).resolve().parents[3]
RATE = {"rate": {"type": "float", "low": 1.0e-3, "high": 1.0, "log": True}}


def climb(params: dict[str, Any], ctx: Any) -> None:
    """A member that climbs by its rate each step; its training state is how high it is, so a
    trial resumed from a checkpoint (its own, or a PBT donor's) goes on from that height."""
    import torch

    height = (ctx.load_state() or {"height": 0.0})["height"]
    for step in range(ctx.step + 1, ctx.max_epochs + 1):
        height += params["rate"]
        ctx.save_state({"height": height})
        if step == ctx.max_epochs:
            ctx.save_model(torch.nn.Linear(1, 1), input_shape=[1])
        ctx.report(height=height, step=step)


@pytest.fixture
def bucket(s3_server: Any, tracked_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's prefix in the bucket as the trial storage; this process has the bucket's AWS_* variables.
    The state directory's MLflow store is made already (``tracked_home``): these tests are about the bucket."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    prefix = f"trials-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(TRIAL_STORAGE_ENV, s3_server.uri(prefix))
    yield prefix


def assert_no_local_checkpoints(home: Path) -> None:
    """Nothing Tune checkpointed landed under the state directory (or in Tune's default ~/ray_results)."""
    local = [p for p in home.rglob("*") if p.name.startswith("checkpoint_") or p.name == "trial_state.pt"]
    assert not local, f"checkpoints on the local disk: {local}"


def assert_no_secret_in(s3_server: Any, keys: list[str]) -> None:
    """Tune writes its experiment (tuner.pkl, with the storage filesystem) to the bucket: never the keys."""
    from s3server import SECRET_KEY

    client = s3_server.client()
    for key in keys:
        if "/checkpoint_" not in key:
            body = client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
            assert SECRET_KEY.encode() not in body, f"the secret key was written to s3://{s3_server.bucket}/{key}"


@pytest.mark.slow
def test_pbt_clones_its_members_from_checkpoints_in_the_bucket_and_logs_the_best_model_from_one(
    s3_server: Any, bucket: str, automl_home: Path, ray_session: None
) -> None:
    # Two members, synchronous, compared at every step: the one that barely climbs is cloned from the other.
    result = automl.search(
        climb,
        RATE,
        n_trials=2,
        metric="height",
        mode="max",
        max_steps=3,
        name="pbt-bucket",
        sampler="random",
        scheduler="pbt",
        scheduler_options={"perturbation_interval": 1, "quantile_fraction": 0.5, "resample_probability": 0, "synch": True},
        warm_start=[{"rate": 0.5}, {"rate": 0.001}],
        cpus_per_trial=0.5,
        plots=False,
    )

    assert result.state_counts == {"COMPLETE": 2}
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{automl_home / 'studies.db'}")
    slow = next(t for t in study.get_trials() if t.params["rate"] == 0.001)
    first = slow.user_attrs[EXPLOITS_ATTR][0]
    assert (first["at_step"], first["donor_trial"], first["donor_step"]) == (1, 0, 1), first
    # The clone's own word, read from the checkpoint it loaded from the bucket: the donor's, at step 1...
    assert first["resumed_from"] == {"trial": 0, "step": 1}, first
    # ... and it went on from the donor's height (0.5 after one step), not from its own (0.001).
    assert slow.intermediate_values[2] > 0.5, slow.intermediate_values

    keys = s3_server.keys(bucket)
    states = [k for k in keys if k.endswith("/trial_state.pt")]
    assert {k.split("/")[2].split("-")[1] for k in states} == {"0000", "0001"}, "both members checkpointed in the bucket"
    assert any(k.endswith("/model.pt") for k in keys), keys
    assert_no_local_checkpoints(automl_home)
    assert_no_secret_in(s3_server, keys)

    # The best model was read from its checkpoint in the bucket and logged (and registered) in MLflow.
    assert result.model_uri is not None and result.registered_model is not None
    client = MlflowClient(tracking_uri=result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["automl.trial_storage"] == s3_server.uri(bucket)
    best_run = next(t.run_id for t in result.trials if t.number == result.best_trial_number)
    logged = client.search_logged_models(experiment_ids=[result.experiment_id], filter_string=f"source_run_id = '{best_run}'")
    assert logged, "no model logged on the best trial's run"


@pytest.mark.slow
def test_a_trial_whose_process_dies_is_retried_from_its_checkpoint_in_the_bucket(
    s3_server: Any, bucket: str, automl_home: Path, ray_session: None, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    starts.mkdir()

    def dies_once(params: dict[str, Any], ctx: Any) -> None:
        # Each attempt notes the step it starts at (the worker shares this machine's disk).
        attempt = len(os.listdir(starts)) + 1
        (starts / f"{attempt}-{ctx.step}-{ctx.resumed_from}").touch()
        height = (ctx.load_state() or {"height": 0.0})["height"]
        for step in range(ctx.step + 1, ctx.max_epochs + 1):
            height += params["rate"]
            ctx.save_state({"height": height})
            ctx.report(height=height, step=step)
            if attempt == 1 and step == 2:
                time.sleep(1.0)  # the driver has the step-2 report and its checkpoint by now
                os._exit(1)  # the trial's process dies, as under kill -9 or an out-of-memory kill

    result = automl.search(
        dies_once,
        RATE,
        n_trials=1,
        metric="height",
        mode="max",
        max_steps=4,
        name="retry-bucket",
        sampler="random",
        scheduler="fifo",
        max_retries=1,
        warm_start=[{"rate": 0.25}],
        plots=False,
    )

    assert result.state_counts == {"COMPLETE": 1}
    # The retry started at the checkpoint's step, from the checkpoint the first attempt left in the bucket.
    assert sorted(p.name for p in starts.iterdir()) == ["1-0-None", "2-2-(0, 2)"]
    trial = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{automl_home / 'studies.db'}").trials[0]
    assert trial.intermediate_values == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}, "the height went on from the checkpoint's"
    run = MlflowClient(tracking_uri=result.tracking_uri).get_run(result.trials[0].run_id)
    assert run.data.tags["automl.retries"] == "1"
    assert [k for k in s3_server.keys(bucket) if k.endswith("/trial_state.pt")], "the checkpoints are in the bucket"
    assert_no_local_checkpoints(automl_home)


@pytest.mark.slow
def test_an_mlflow_server_keeps_a_job_s_artifacts_in_the_bucket(
    s3_server: Any, bucket: str, automl_home: Path, ray_session: None, tmp_path: Path, mlflow_store_template: Path
) -> None:
    # The production start script, its artifacts in the bucket; clients reach them only through it.
    # Its backend store is made already (a copy of the session's empty one): the server would spend
    # seconds making MLflow's schema before it answers, and this test is about the artifacts.
    prefix = f"mlflow-{uuid.uuid4().hex[:8]}"
    shutil.copyfile(mlflow_store_template, tmp_path / "mlflow.db")
    url, server = start_server(
        tmp_path, backend=f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts=s3_server.uri(prefix), env=s3_server.env
    )
    try:
        result = automl.search(
            climb,
            RATE,
            n_trials=1,
            metric="height",
            mode="max",
            max_steps=1,
            name="artifacts-bucket",
            sampler="random",
            scheduler="fifo",
            tracking_uri=url,
            plots=False,
        )
        assert result.state_counts == {"COMPLETE": 1} and result.model_uri is not None
        keys = s3_server.keys(prefix)
        assert any(k.endswith("/job/spec.yaml") for k in keys), keys
        assert any(k.endswith("/MLmodel") for k in keys), f"the best model is not in the bucket: {keys}"
        # Read back through the server, as any client does: it fetches them from the bucket.
        client = MlflowClient(tracking_uri=url)
        spec_text = client.download_artifacts(result.parent_run_id, "job/spec.yaml", str(tmp_path / "downloaded"))
        assert "artifacts-bucket" in Path(spec_text).read_text()
        # Nothing of MLflow's on this machine's disk, and the trial's checkpoint in the bucket too.
        assert not list(automl_home.rglob("MLmodel")) and not (automl_home / "artifacts").exists()
        assert [k for k in s3_server.keys(bucket) if k.endswith("/model.pt")]
        assert_no_local_checkpoints(automl_home)
    finally:
        stop_server(server)


def test_the_trial_storage_is_a_folder_by_default_and_a_bucket_when_set(
    automl_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(TRIAL_STORAGE_ENV, raising=False)  # the automl_home fixture leaves it as the shell has it
    assert resolve_settings().trial_storage == str(automl_home / "ray_results")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(TRIAL_STORAGE_ENV, "trials")
    assert resolve_settings().trial_storage == str(tmp_path / "trials")
    monkeypatch.setenv(TRIAL_STORAGE_ENV, "s3://bucket/some/prefix/")
    settings = resolve_settings()
    assert settings.trial_storage == "s3://bucket/some/prefix" and not settings.trial_storage_is_local
    assert resolve_settings(trial_storage="file:///srv/trials").trial_storage == "/srv/trials"


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("gs://bucket/prefix", r"AUTOML_TRIAL_STORAGE.*gs://bucket/prefix is neither a folder nor s3://bucket/prefix"),
        ("s3://AKIAKEY:hunter2secret@bucket/prefix", r"AUTOML_TRIAL_STORAGE.*holds credentials; set AWS_ACCESS_KEY_ID"),
        ("s3:///prefix", r"AUTOML_TRIAL_STORAGE.*names no bucket"),
    ],
)
def test_an_unusable_trial_storage_is_refused_in_one_line(automl_home: Path, value: str, match: str) -> None:
    with pytest.raises(InputError, match=match) as refused:
        resolve_settings(trial_storage=value)
    assert "\n" not in str(refused.value) and "hunter2secret" not in str(refused.value)


def test_a_missing_bucket_or_refused_keys_are_refused_before_a_search_in_one_line(
    s3_server: Any, automl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(AutomlError, match=r"\(AUTOML_TRIAL_STORAGE\): the bucket 'no-such-bucket' does not exist at http://127"):
        open_trial_storage(resolve_settings(trial_storage="s3://no-such-bucket/trials"))
    path, filesystem = open_trial_storage(resolve_settings(trial_storage=s3_server.uri("trials")))
    assert path == f"{s3_server.bucket}/trials" and filesystem is not None
    # A store that refuses the keys (moto takes any: a stand-in answers 403 Forbidden to everything).
    with _refusing_store() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        with pytest.raises(
            AutomlError, match=r"trial storage s3://.* \(AUTOML_TRIAL_STORAGE\) cannot be used: .*HeadBucket"
        ) as refused:
            open_trial_storage(resolve_settings(trial_storage=s3_server.uri("trials")))
    assert "\n" not in str(refused.value) and s3_server.env["AWS_SECRET_ACCESS_KEY"] not in str(refused.value)


@contextlib.contextmanager
def _refusing_store() -> Iterator[str]:
    """An HTTP endpoint on loopback that answers every request 403 Forbidden, as a store does to wrong keys."""

    class Forbidden(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = do_HEAD

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
