"""The web view of ``automl server``: placeholder until the pages land (issue 17, item 4)."""

from __future__ import annotations

from fastapi import FastAPI


def mount_web(app: FastAPI) -> None:
    """Add the web view's pages to ``app``."""
