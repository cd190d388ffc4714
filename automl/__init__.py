"""Hyperparameter search for PyTorch models: Optuna searches, Ray Tune runs trials, MLflow records.

The public Python API. Names are imported on first use so that ``import automl`` (and
``automl --help``) stay fast and do not load Ray, PyTorch or MLflow.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl.api import run_job, run_spec, search
    from automl.errors import AutomlError, SpecError
    from automl.jobs_api import JobStatus, best, cancel, connect, jobs, status, submit, wait_for
    from automl.results import SearchResult, TrialSummary
    from automl.spaces import SearchSpace, load_space
    from automl.spec import JobSpec, load_spec
    from workers.context import TrialContext

__all__ = [
    "AutomlError",
    "JobSpec",
    "JobStatus",
    "SearchResult",
    "SearchSpace",
    "SpecError",
    "TrialContext",
    "TrialSummary",
    "best",
    "cancel",
    "connect",
    "jobs",
    "load_space",
    "load_spec",
    "run_job",
    "run_spec",
    "search",
    "status",
    "submit",
    "wait_for",
]

# A library logs; the application (our CLI's worker command, or the user's) decides where to.
logging.getLogger(__name__).addHandler(logging.NullHandler())

_WHERE = {
    "search": "automl.api",
    "run_job": "automl.api",
    "run_spec": "automl.api",
    "AutomlError": "automl.errors",
    "SpecError": "automl.errors",
    "SearchResult": "automl.results",
    "TrialSummary": "automl.results",
    "SearchSpace": "automl.spaces",
    "load_space": "automl.spaces",
    "JobSpec": "automl.spec",
    "load_spec": "automl.spec",
    "TrialContext": "workers.context",
    **dict.fromkeys(("JobStatus", "best", "cancel", "connect", "jobs", "status", "submit", "wait_for"), "automl.jobs_api"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'automl' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
