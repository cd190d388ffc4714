"""MLflow's fluent (process-wide) tracking and registry URIs, set for a block and put back.

``mlflow.pytorch.log_model`` and the registry work through them; the rest of the service uses
``MlflowClient`` with explicit URIs. What must stay true: they are changed only under
:data:`FLUENT_LOCK` (a runner may log two jobs' models at once), and put back as they were,
the environment included.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

FLUENT_LOCK = threading.Lock()
FLUENT_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # what MLflow's fluent setters export


@contextlib.contextmanager
def fluent_uris(uri: str) -> Iterator[None]:
    """MLflow's fluent tracking and registry URIs set to ``uri`` for a block, then put back as they were.

    ``mlflow.set_tracking_uri``/``set_registry_uri`` also export the URI to the environment, so
    putting a default URI back (``./mlflow.db``) that way would leave ``MLFLOW_TRACKING_URI`` set,
    and the process's next search (``automl.search`` again, in a notebook) would track there
    instead of in ``$AUTOML_HOME``: the environment is put back as it was too.
    """
    import mlflow

    previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    previous_env = {name: os.environ.get(name) for name in FLUENT_URI_ENV}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)
        for name, value in previous_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
