"""Tracking: what a search records in MLflow, and how the writes get there without holding up Tune.

- :mod:`~automl.tracking.runs`: a trial run's updates (:class:`RunUpdate`) and the seam that
  writes them (:class:`TrialRuns`, a Protocol);
- :mod:`~automl.tracking.mlflow_tracker`: :class:`MlflowTracker`, the job's experiment, parent
  run, trial runs and best model through ``MlflowClient``;
- :mod:`~automl.tracking.notes`: the Markdown descriptions the MLflow UI shows;
- :mod:`~automl.tracking.views`: the experiment's saved view of its runs by the job's metric;
- :mod:`~automl.tracking.servable`: the best model as one MLflow model with a ``pytorch`` and a
  serving ``python_function`` flavour (:mod:`~automl.tracking.automl_pyfunc`, shipped inside it);
- :mod:`~automl.tracking.registry`: a registered version's description and tags, and its ``champion`` alias;
- :mod:`~automl.tracking.fluent`: MLflow's process-wide URIs, set for a block under a lock;
- :mod:`~automl.tracking.writer`: :class:`~automl.tracking.writer.TrackingWriter`, the driver's
  background thread of ordered tracking and job-store writes;
- :mod:`~automl.tracking.plots`: the search plots on a job's run.

What must stay true: importing this package imports no MLflow (the CLI's light commands and the
trial loop import it); MLflow is imported when a tracker is made.
"""

from __future__ import annotations

from automl.tracking.fluent import FLUENT_URI_ENV, fluent_uris
from automl.tracking.mlflow_tracker import MlflowTracker
from automl.tracking.notes import NOTE, RESULT_PREFIX, SUMMARY_END, description_of, experiment_note, summary_note
from automl.tracking.runs import TAG_PREFIX, RegisteredModel, RunUpdate, TrialRuns, read_text, trace_tail

__all__ = [
    "FLUENT_URI_ENV",
    "NOTE",
    "RESULT_PREFIX",
    "SUMMARY_END",
    "TAG_PREFIX",
    "MlflowTracker",
    "RegisteredModel",
    "RunUpdate",
    "TrialRuns",
    "description_of",
    "experiment_note",
    "fluent_uris",
    "read_text",
    "summary_note",
    "trace_tail",
]
