"""The registered model serves: a real iris job, its version's record, ``mlflow.pyfunc`` on it, and
``mlflow models serve`` answering real HTTP on loopback; the ``champion`` alias on a real registry."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.datasets import load_iris

import automl
from automl.tracking import MlflowTracker, fluent_uris
from automl.tracking.automl_pyfunc import TorchModel
from automl.tracking.registry import CHAMPION, ModelOrigin, beats
from automl.tracking.servable import model_kind, signature_of
from workers.models import build_mlp

SERVE_START_S = 90  # `mlflow models serve` imports mlflow, torch and pandas: seconds on a loaded 2-core machine
CLASSES = ["setosa", "versicolor", "virginica"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fluent_store(automl_home: Path) -> Iterator[str]:
    """MLflow's fluent URIs on the test's store (``mlflow.pyfunc.load_model`` reads them), put back after."""
    uri = f"sqlite:///{automl_home / 'mlflow.db'}"
    with fluent_uris(uri):
        yield uri


def _iris_job(tmp_path: Path, name: str) -> automl.SearchResult:
    job = tmp_path / f"{name}.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "trainer": {"name": "mlp", "dataset": "iris"},
                "space": "mlp-small",
                "metric": "val_accuracy",
                "mode": "max",
                "scheduler": {"name": "fifo"},
                "budget": {"trials": 2, "max_epochs": 2},
                "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
                "tracking": {"plots": False},
                "seed": 3,
            }
        )
    )
    return automl.run_job(job)


def _serve(model_uri: str, tracking_uri: str, log: Path) -> tuple[subprocess.Popen[Any], str]:
    """``mlflow models serve`` on a free loopback port, in the test's environment; its process and URL."""
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri}
    # MLflow starts `uvicorn` by name, as an activated virtual environment has it on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.3)
    _stop(server)
    pytest.fail(f"mlflow models serve did not answer within {SERVE_START_S} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[Any]) -> None:
    """Stop the server and its workers (its own process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.slow
def test_the_registered_model_serves_labels_and_probabilities(
    tmp_path: Path, automl_home: Path, ray_session: None, fluent_store: str
) -> None:
    started = time.monotonic()
    result = _iris_job(tmp_path, "iris-serve")
    print(f"job: {time.monotonic() - started:.1f} s")
    assert result.registered_model == ("iris-serve", "1")
    best = next(t for t in result.trials if t.number == result.best_trial_number)

    # The version says where it came from, and is the champion (the first version of its model).
    client = MlflowClient(tracking_uri=fluent_store, registry_uri=fluent_store)
    version = client.get_model_version("iris-serve", "1")
    assert version.aliases == [CHAMPION]
    assert version.tags["automl.metric"] == "val_accuracy" and version.tags["automl.mode"] == "max"
    assert float(version.tags["automl.metric_value"]) == pytest.approx(result.best_value)
    assert version.tags["automl.trial_number"] == str(best.number)
    assert version.tags["automl.study_name"] == result.study_name
    assert version.tags["automl.job_id"] == result.study_name.rsplit("-", 1)[1]
    assert version.tags["automl.job_run_id"] == result.parent_run_id
    assert f"trial {best.number}" in version.description and "`val_accuracy`" in version.description
    assert "`learning_rate`" in version.description
    assert client.get_registered_model("iris-serve").description

    # pyfunc: a DataFrame with the feature names (float64 or float32, columns in any order) gives
    # labels; records, a list of rows and a 2-D array too; probabilities on request. The signature
    # says so: a double per feature, in order (unnamed, so that rows without names pass MLflow's check).
    x, y = load_iris(return_X_y=True)
    names = list(load_iris().feature_names)
    model = mlflow.pyfunc.load_model("models:/iris-serve@champion")
    signature = model.metadata.signature
    assert not signature.inputs.has_input_names() and [t.name for t in signature.inputs.input_types()] == ["double"] * 4
    assert model.metadata.metadata["feature_names"] == names
    frame = pd.DataFrame(x, columns=names)
    labels = model.predict(frame)
    assert set(labels) <= set(CLASSES) and np.mean(labels == np.asarray(CLASSES)[y]) > 0.5
    assert list(model.predict(frame.astype("float32")[names[::-1]])) == list(labels)
    assert list(model.predict(frame.head(3).to_dict(orient="records"))) == list(labels[:3])
    assert list(model.predict(x.tolist())) == list(labels)
    assert list(model.predict(x.astype(np.float32))) == list(labels)
    proba = model.predict(frame.head(3), params={"predict_method": "predict_proba"})
    assert list(proba.columns) == CLASSES and np.allclose(proba.sum(axis=1), 1.0)
    assert list(proba.idxmax(axis=1)) == list(labels[:3])
    # The torch flavour is as it was: raw features in, logits out.
    module = mlflow.pytorch.load_model("models:/iris-serve/1")
    with torch.no_grad():
        logits = module(torch.tensor(x, dtype=torch.float32))
    assert list(np.asarray(CLASSES)[logits.argmax(dim=1).numpy()]) == list(labels)

    # `mlflow models serve` on the champion answers real HTTP requests.
    mark = time.monotonic()
    server, url = _serve("models:/iris-serve@champion", fluent_store, tmp_path / "serve.log")
    try:
        print(f"server up: {time.monotonic() - mark:.1f} s")
        split = {"dataframe_split": {"columns": names, "data": x[:3].tolist()}}
        answer = httpx.post(f"{url}/invocations", json=split, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": list(labels[:3])}
        # Records, with a whole number written as JSON does (5, not 5.0).
        records = [{**row, names[0]: 5} for row in frame.head(2).to_dict(orient="records")]
        answer = httpx.post(f"{url}/invocations", json={"dataframe_records": records}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert set(answer.json()["predictions"]) <= set(CLASSES)
        # Rows without names, in the signature's order.
        answer = httpx.post(f"{url}/invocations", json={"inputs": x[:3].tolist()}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": list(labels[:3])}
        answer = httpx.post(f"{url}/invocations", json={**split, "params": {"predict_method": "predict_proba"}}, timeout=30)
        assert answer.status_code == 200, answer.text
        rows = answer.json()["predictions"]
        assert [set(row) for row in rows] == [set(CLASSES)] * 3
        assert [max(row, key=row.get) for row in rows] == list(labels[:3])
    finally:
        _stop(server)
    print(f"done: {time.monotonic() - started:.1f} s")


def _log_table_model(tracker: MlflowTracker, module: torch.nn.Module, info: dict[str, Any], name: str) -> str:
    """Log ``module`` as a trial's model is logged (the servable flavours, registered); its URI."""
    run_id = tracker.create_trial_run(0, {})
    return tracker.log_model(run_id, module, registered_name=name, metadata=info).model_uri


def test_pyfunc_takes_named_columns_records_rows_and_arrays(automl_home: Path, fluent_store: str) -> None:
    """Without Ray: real models logged and loaded as a job's are, given every form of rows MLflow lets through."""
    tracker = MlflowTracker(fluent_store, artifact_root=(automl_home / "artifacts").as_uri())
    tracker.start_job(experiment="rows", run_name="rows-0000abcd", params={}, tags={}, artifacts={})
    x, y = load_iris(return_X_y=True)
    names = list(load_iris().feature_names)
    torch.manual_seed(0)
    classifier = build_mlp(4, 3, hidden_size=8, num_layers=1, dropout=0.0, feature_mean=x.mean(0), feature_std=x.std(0))
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.05)
    for _ in range(60):  # a few full-batch steps: labels that differ from row to row
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(classifier(torch.tensor(x, dtype=torch.float32)), torch.tensor(y)).backward()
        optimizer.step()
    info = {
        "task": "classification",
        "feature_names": names,
        "class_names": CLASSES,
        "input_shape": [4],
        "input_example": x[:2].tolist(),
    }
    model = mlflow.pyfunc.load_model(_log_table_model(tracker, classifier, info, "rows-classifier"))

    frame = pd.DataFrame(x, columns=names)
    labels = list(model.predict(frame))
    assert np.mean(np.asarray(labels) == np.asarray(CLASSES)[y]) > 0.8
    same_labels = {
        "float32 columns in another order": frame.astype("float32")[names[::-1]],
        "int32 columns": frame.round().astype("int32"),
        "extra columns after the features": frame.assign(target=y),
        "a dict of columns": {name: x[:, i] for i, name in enumerate(names)},
        "records": frame.to_dict(orient="records"),
        "a list of rows": x.tolist(),
        "a float64 array": x,
        "a float32 array": x.astype(np.float32),
    }
    for form, rows in same_labels.items():
        expected = list(model.predict(frame.round())) if form == "int32 columns" else labels
        assert list(model.predict(rows)) == expected, form
    assert list(model.predict(x.round().astype(np.int32))) == list(model.predict(frame.round()))
    proba = model.predict(x[:3].tolist(), params={"predict_method": "predict_proba"})
    assert list(proba.columns) == CLASSES and list(proba.idxmax(axis=1)) == labels[:3]

    # What MLflow's check refuses before the model sees it: int64 values (it casts ints to double
    # only up to 32 bits: a list of whole numbers is int64), too few columns, and named columns
    # that are not all the features in the first places (it passes the first 4 columns on).
    with pytest.raises(MlflowException, match="Can not safely convert int64 to float64"):
        model.predict(x.round().astype(np.int64))
    with pytest.raises(MlflowException, match="declares 4 inputs"):
        model.predict(x[:, :3].tolist())
    with pytest.raises(ValueError, match="put the features first"):
        model.predict(frame.assign(target=y * 1.0)[["target", *names]])

    # A regressor's values, the same for every form.
    regressor = build_mlp(
        2, 1, hidden_size=4, num_layers=1, dropout=0.0, feature_mean=[0, 0], feature_std=[1, 1], target_mean=10.0, target_std=2.0
    )
    info = {"task": "regression", "feature_names": ["a", "b"], "class_names": [], "input_shape": [2]}
    model = mlflow.pyfunc.load_model(_log_table_model(tracker, regressor, info, "rows-regressor"))
    rows = np.random.default_rng(0).normal(size=(5, 2))
    values = model.predict(pd.DataFrame(rows, columns=["a", "b"]))
    assert values.dtype == np.float64 and np.ptp(values) > 0
    for form in (rows.tolist(), rows, rows.astype(np.float32), pd.DataFrame(rows, columns=["a", "b"])[["b", "a"]]):
        assert np.allclose(model.predict(form), values, atol=1e-6)


def _origin(value: float, *, metric: str = "val_accuracy", mode: str = "max", trial: int = 0) -> ModelOrigin:
    return ModelOrigin("toy", "toy-0000abcd", None, trial, f"trial-{trial:03d}-0000abcd", metric, mode, value, {"lr": 0.1})


def test_the_champion_moves_only_to_a_better_version(automl_home: Path) -> None:
    automl_home.mkdir(parents=True)
    uri = f"sqlite:///{automl_home / 'mlflow.db'}"
    tracker = MlflowTracker(uri, artifact_root=(automl_home / "artifacts").as_uri())
    tracker.start_job(experiment="toy", run_name="toy-0000abcd", params={}, tags={}, artifacts={})

    def register(origin: ModelOrigin) -> str:
        run_id = tracker.create_trial_run(origin.trial_number, {})
        logged = tracker.log_model(run_id, torch.nn.Linear(2, 1), registered_name="toy", origin=origin)
        assert logged.version is not None
        return logged.version

    def champion() -> str:
        return str(tracker.client.get_model_version_by_alias("toy", CHAMPION).version)

    assert register(_origin(0.8)) == champion() == "1"  # the first version is the champion
    register(_origin(0.7, trial=1))
    assert champion() == "1"  # worse: stays
    register(_origin(0.8, trial=2))
    assert champion() == "1"  # a tie keeps the champion
    assert register(_origin(0.9, trial=3)) == champion() == "4"  # better: moves
    # A job that measures another way cannot be compared: its version takes over.
    assert register(_origin(0.5, metric="val_loss", mode="min", trial=4)) == champion() == "5"
    register(_origin(0.6, metric="val_loss", mode="min", trial=5))
    assert champion() == "5"  # a higher loss is worse
    assert tracker.client.get_model_version("toy", "6").tags["automl.metric_value"] == "0.6"


def test_which_version_beats_the_champion() -> None:
    held = {"automl.metric": "val_loss", "automl.mode": "min", "automl.metric_value": "0.5"}
    assert beats(_origin(0.4, metric="val_loss", mode="min"), held)
    assert not beats(_origin(0.5, metric="val_loss", mode="min"), held)
    assert not beats(_origin(0.6, metric="val_loss", mode="min"), held)
    assert beats(_origin(0.9, metric="val_loss", mode="max"), held)  # another direction: not comparable
    assert beats(_origin(0.1), {})  # a version from before these tags
    assert beats(_origin(0.1, metric="val_loss", mode="min"), {**held, "automl.metric_value": "nan"})


def test_a_regressor_returns_values_and_a_custom_model_stays_as_it_was() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 2))
    module = build_mlp(
        2, 1, hidden_size=4, num_layers=1, dropout=0.0, feature_mean=[0, 0], feature_std=[1, 1], target_mean=10.0, target_std=2.0
    )
    info = {"task": "regression", "feature_names": ["a", "b"], "class_names": [], "input_shape": [2]}
    model = TorchModel(module, info)
    values = model.predict(pd.DataFrame(x, columns=["a", "b"]))
    with torch.no_grad():
        expected = module.eval()(torch.tensor(x, dtype=torch.float32)).reshape(-1).numpy()
    assert values.dtype == np.float64 and np.allclose(values, expected, atol=1e-6)
    assert np.allclose(model.predict(x.tolist()), values)  # positional rows, when called directly
    with pytest.raises(ValueError, match="lack the model's features"):
        model.predict(pd.DataFrame(x, columns=["a", "c"]))
    with pytest.raises(ValueError, match="for classifiers"):
        model.predict(x, params={"predict_method": "predict_proba"})
    with pytest.raises(ValueError, match="each row must have the model's 2 features in this order: a, b"):
        model.predict(np.c_[x, x[:, :1]])
    assert np.allclose(model.predict(x[0]), values[:1])  # one row
    assert model.predict(np.zeros((0, 2))).shape == (0,)
    signature = signature_of(info)
    assert not signature.inputs.has_input_names() and len(signature.inputs.inputs) == 2 and signature.params is None
    # A custom objective's model names no task: saved as plain mlflow.pytorch saves it.
    assert model_kind({"input_shape": [1]}) == "raw" and signature_of({"input_shape": [1]}) is None
    assert model_kind({"task": "classification", "input_shape": [1, 8, 8], "class_names": ["a", "b"]}) == "tensor"
