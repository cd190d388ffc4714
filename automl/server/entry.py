"""What uvicorn imports in each worker process of ``automl server``: the application, built from the environment."""

from __future__ import annotations

from fastapi import FastAPI

from automl.server.app import create_app


def app() -> FastAPI:
    """The application factory (``uvicorn automl.server.entry:app --factory``)."""
    return create_app()
