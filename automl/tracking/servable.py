"""How the best trial's model is saved as an MLflow model that both loads as torch and serves.

The model has two flavours in one folder. ``pytorch`` is the trained module, pickled whole, as
``mlflow.pytorch.load_model`` has always returned it (it takes raw features: the standardisation
is inside it). ``python_function`` is what ``mlflow.pyfunc.load_model`` and ``mlflow models
serve`` use: :mod:`automl.tracking.automl_pyfunc`, shipped in the model's ``code/`` folder, which
takes rows of named features and returns class labels (probabilities on request) or values. One
model rather than a pyfunc wrapping a second logged model: one version to register and alias, and
the torch module is the same file for both. This module is the ``flavor`` handed to
``mlflow.models.Model.log`` (the way ``mlflow.pytorch.log_model`` itself logs: :func:`log_servable_model`),
so MLflow makes the logged model, validates its serving example and registers it.

What must stay true: a model whose info names no ``task`` (a custom objective's) is saved exactly
as plain ``mlflow.pytorch`` saves it, with a tensor signature when its input shape is known; the
signature of a table model has a ``double`` column per feature, in the trainer's order, unnamed.
Unnamed because MLflow enforces a signature before the loader runs, and one of named columns
refuses rows without names (a list of lists, a 2-D array); the loader matches names itself (from
the ``feature_names`` in the model's metadata), so a DataFrame with the names, in any order, and
records are read by name, and rows without names in the trainer's order.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automl.states import MlflowStatus
from automl.tracking.fluent import fluent_uris
from automl.tracking.runs import RegisteredModel

LOADER = Path(__file__).with_name("automl_pyfunc.py")
LOADER_MODULE = LOADER.stem
TASKS = ("classification", "regression")
# Kept out of the MLmodel's metadata: an input example is saved as one already.
EXAMPLE_KEY = "input_example"


def model_kind(info: Mapping[str, Any]) -> str:
    """``table`` (named features), ``tensor`` (an image or other array) or ``raw`` (no task: as plain ``mlflow.pytorch``)."""
    if info.get("task") not in TASKS:
        return "raw"
    return "table" if info.get("feature_names") else "tensor" if info.get("input_shape") else "raw"


def signature_of(info: Mapping[str, Any]) -> Any:
    """The model's signature: a column per feature (doubles, in order) or a float32 tensor in; labels or values out.

    ``None`` for a ``raw`` model: MLflow infers its tensor signature from the input example.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    from automl.tracking import automl_pyfunc

    kind = model_kind(info)
    if kind == "raw":
        return None
    if kind == "table":
        # Unnamed (see the module's docstring): the feature names are the metadata's and the input example's.
        inputs = Schema([ColSpec("double") for _ in info["feature_names"]])
    else:
        import numpy as np

        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *[int(n) for n in info["input_shape"]]))])
    if info["task"] == "classification":
        outputs = Schema([ColSpec("string")])
        params = ParamSchema([ParamSpec(automl_pyfunc.PREDICT_METHOD, "string", automl_pyfunc.PREDICT)])
        return ModelSignature(inputs=inputs, outputs=outputs, params=params)
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double")]))


def input_example_of(info: Mapping[str, Any]) -> Any:
    """Two rows the model takes: the trainer's own example rows when it gave some, else zeros.

    A DataFrame with the feature names for a table model; a float32 array of the input shape otherwise;
    ``None`` when the shape is unknown.
    """
    import numpy as np

    kind = model_kind(info)
    if kind == "table":
        import pandas as pd

        names = [str(name) for name in info["feature_names"]]
        rows = info.get(EXAMPLE_KEY) or [[0.0] * len(names)] * 2
        return pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=names)
    shape = info.get("input_shape")
    if not shape:
        return None
    return np.zeros((2, *[int(n) for n in shape]), dtype=np.float32)


def metadata_of(info: Mapping[str, Any]) -> dict[str, Any]:
    """What goes in the MLmodel's ``metadata``: the trainer's info (task, class and feature names, shape)."""
    return {key: value for key, value in info.items() if key != EXAMPLE_KEY}


def save_model(
    path: str,
    mlflow_model: Any = None,
    *,
    pytorch_model: Any,
    info: Mapping[str, Any],
    pip_requirements: list[str] | None = None,
    **kwargs: Any,
) -> None:
    """Save ``pytorch_model`` at ``path`` with both flavours (``Model.log`` calls this as a flavour's ``save_model``).

    Args:
        path: the new model's folder.
        mlflow_model: the ``Model`` that ``Model.log`` made (its metadata set); a new one when ``None``.
        pytorch_model: the trained module.
        info: what the trial saved with it (``ctx.save_model``'s keywords).
        pip_requirements: what serving it needs; the torch and numpy/pandas of this process by default.
        kwargs: passed on to ``mlflow.pytorch.save_model``.
    """
    import mlflow.pytorch
    from mlflow import pyfunc
    from mlflow.models import Model

    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    kind = model_kind(info)
    mlflow.pytorch.save_model(
        pytorch_model,
        path,
        mlflow_model=mlflow_model,
        code_paths=[str(LOADER)] if kind != "raw" else None,
        signature=signature_of(info),
        input_example=input_example_of(info),
        # Built-in models are plain torch.nn modules: pickled whole they load anywhere torch does.
        serialization_format="pickle",
        # Naming the requirements skips MLflow's slow inference of them (it imports the model).
        pip_requirements=pip_requirements if pip_requirements is not None else default_requirements(kind),
        **kwargs,
    )
    if kind == "raw":
        return
    # The same folder, read through our loader: mlflow.pytorch's own pyfunc returns raw outputs
    # and takes float32 arrays only.
    conf = mlflow_model.flavors.pop(pyfunc.FLAVOR_NAME)
    env = conf.get(pyfunc.ENV)
    pyfunc.add_to_model(
        mlflow_model,
        loader_module=LOADER_MODULE,
        code=conf.get(pyfunc.CODE),
        conda_env=env.get("conda") if isinstance(env, dict) else env,
        python_env=env.get("virtualenv") if isinstance(env, dict) else None,
    )
    mlflow_model.save(os.path.join(path, "MLmodel"))


def log_servable_model(
    client: Any,
    tracking_uri: str,
    run_id: str,
    model: Any,
    *,
    registered_name: str | None,
    info: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
) -> RegisteredModel:
    """Log ``model`` (with ``info``, what its trial saved with it) to run ``run_id`` with
    ``Model.log``, as ``mlflow.pytorch.log_model`` does, and register it under ``registered_name``.

    ``tags`` go on the logged model and the new version. Hold ``FLUENT_LOCK``: MLflow logs models
    through its fluent API, so the tracking URI is set for the call and put back after.
    """
    import mlflow
    from mlflow.models import Model

    import automl.tracking.servable as flavor

    ended = client.get_run(run_id).info
    # MLflow prints registration notices straight to stderr; the CLI owns the terminal.
    with fluent_uris(tracking_uri), mlflow.start_run(run_id=run_id), contextlib.redirect_stderr(io.StringIO()):
        logged = Model.log(
            artifact_path=None,
            name="model",
            flavor=flavor,
            flavor_name="pytorch",
            registered_model_name=registered_name,
            await_registration_for=0,
            metadata=metadata_of(info) or None,
            tags=dict(tags) if tags else None,
            run_id=run_id,
            pytorch_model=model,
            info=info,
        )
    if ended.status != MlflowStatus.RUNNING:
        # Logging into a run reopens it, and closing it stamps it now: it ended when its trial did.
        client.set_terminated(run_id, ended.status, end_time=ended.end_time)
    version = None if logged.registered_model_version is None else str(logged.registered_model_version)
    uri = f"models:/{registered_name}/{version}" if registered_name and version else logged.model_uri
    return RegisteredModel(uri, tracking_uri, registered_name, version, run_id)


def default_requirements(kind: str) -> list[str]:
    """This process's torch (and, for our loader, numpy and pandas), pinned; MLflow adds itself."""
    import importlib.metadata

    names = ["torch"] if kind == "raw" else ["torch", "numpy", "pandas"]
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in names]


__all__ = ["LOADER_MODULE", "input_example_of", "log_servable_model", "metadata_of", "model_kind", "save_model", "signature_of"]
