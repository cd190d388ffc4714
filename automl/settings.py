"""Where the service keeps its state, and which external services it talks to.

With no configuration everything is embedded under one state directory (``AUTOML_HOME``,
default ``~/.automl``): the Optuna study database, the MLflow store and artifacts, and Ray
Tune's trial folders. One environment variable per component points it at the real thing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "AUTOML_HOME"
STORAGE_ENV = "AUTOML_STORAGE_URL"
DB_ENV = "AUTOML_DB_URL"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
RAY_ADDRESS_ENV = "RAY_ADDRESS"


@dataclass(frozen=True)
class Settings:
    """The resolved locations for one search.

    Attributes:
        home: the state directory.
        db_url: the job store (SQLAlchemy URL): the queue of jobs, their leases and events.
        storage_url: the Optuna RDB storage URL (SQLAlchemy URL).
        tracking_uri: the MLflow tracking URI (also used as the model registry URI).
        artifact_root: where a local MLflow store keeps artifacts (``None`` for a server).
        ray_results: Ray Tune's storage path (trial folders and checkpoints).
        ray_address: a Ray cluster address, or ``None`` for a local Ray instance.
    """

    home: Path
    db_url: str
    storage_url: str
    tracking_uri: str
    artifact_root: str | None
    ray_results: Path
    ray_address: str | None


def state_home() -> Path:
    """The state directory: ``$AUTOML_HOME``, else ``~/.automl``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".automl").expanduser().resolve()


def resolve_settings(
    *,
    db_url: str | None = None,
    tracking_uri: str | None = None,
    storage_url: str | None = None,
    ray_address: str | None = None,
) -> Settings:
    """Resolve each location: the explicit argument, else its environment variable, else embedded.

    Nothing is created here; :func:`prepare` makes the local folders when a search starts.
    """
    home = state_home()
    tracking = tracking_uri or os.environ.get(TRACKING_ENV) or f"sqlite:///{home / 'mlflow.db'}"
    # A tracking server keeps its own artifacts; a database or folder store needs a place for them.
    local_tracking = not tracking.startswith(("http://", "https://", "databricks"))
    return Settings(
        home=home,
        db_url=db_url or os.environ.get(DB_ENV) or f"sqlite:///{home / 'jobs.db'}",
        storage_url=storage_url or os.environ.get(STORAGE_ENV) or f"sqlite:///{home / 'studies.db'}",
        tracking_uri=tracking,
        artifact_root=(home / "artifacts").as_uri() if local_tracking else None,
        ray_results=home / "ray_results",
        ray_address=ray_address or os.environ.get(RAY_ADDRESS_ENV) or None,
    )


def prepare(settings: Settings) -> None:
    """Create the local folders a search writes to, naming the path when that fails."""
    from automl.errors import AutomlError

    for folder in (settings.home, settings.ray_results):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AutomlError(
                f"cannot create the state directory {folder}: {exc.strerror}. "
                f"Set {HOME_ENV} to a writable folder."
            ) from exc
        if not os.access(folder, os.W_OK):
            raise AutomlError(f"the state directory {folder} is not writable. Set {HOME_ENV} to a writable folder.")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs, MLflow tags and status output."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a database URL: hide a userinfo password by hand
        import re

        return re.sub(r"(://[^:/@]+:)[^@/]+@", r"\1***@", url)
