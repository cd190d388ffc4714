"""The settings of ``automl server``, from ``AUTOML_SERVER_*`` environment variables (pydantic-settings).

The job store, study storage and MLflow locations are the service's usual settings
(:mod:`automl.settings`): the server is where they are held.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from automl.errors import InputError

ENV_PREFIX = "AUTOML_SERVER_"


class ServerConfig(BaseSettings):
    """How ``automl server`` listens and what it accepts."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    def __init__(self, **values: Any) -> None:
        """Read the settings (``values`` over the environment).

        Raises:
            InputError: a setting is out of range or of the wrong type; one line naming each variable.
        """
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = [
                f"{ENV_PREFIX}{'_'.join(str(part) for part in e['loc']).upper()}={e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            ]
            raise InputError("; ".join(problems)) from None

    host: str = Field(default="127.0.0.1", description="the address to listen on (0.0.0.0 in a container)")
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes (the server is stateless)")
    max_json_kb: int = Field(default=1024, ge=16, description="the largest JSON request body, in KB")
    max_code_mb: float = Field(default=500.0, gt=0, le=500, description="the largest code package upload, in MB")
    auth_cache_s: float = Field(
        default=2.0, ge=0, le=60, description="how long a checked token is trusted before it is checked again"
    )
    secure_cookies: bool = Field(default=False, description="mark the web view's login cookie Secure (behind HTTPS)")
    mlflow_ui_url: str | None = Field(default=None, description="the MLflow UI's address, for links from the web view")
    notifier: bool = Field(default=True, description="deliver job-end webhooks from this server too")
