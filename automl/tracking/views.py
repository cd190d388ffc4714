"""The saved view a job's experiment offers in the MLflow UI: its runs sorted by the job's metric,
with that metric, the jobs' best value, the trial state and the hyperparameters as columns.

MLflow 3.17 has no server-side default for the runs table's columns (they are the browser's, per
experiment). What it has is saved views: the runs page's *Views* menu lists the experiment tags
``mlflow.sharedViewState.<id>`` and opens one at ``#/experiments/<id>/runs?viewStateShareKey=<id>``.
The tracker writes one per metric, in the format the UI saves them in (an envelope with ``name``,
``createdAt``, ``updatedAt`` and ``state``, the JSON of the page's search facets and table state).

:func:`label_experiment` writes the view, the experiment's description (which links it) and the
tag MLflow names an experiment's primary metric.

What must stay true: no MLflow import (the client is handed in); a view is rewritten only when
what it shows changed, keeping its creation time; its id depends only on the metric; a
description a person wrote instead of ours is kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from automl.tracking.notes import NOTE, experiment_note, is_experiment_note
from automl.tracking.runs import now_ms

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_URL_PARAM = "viewStateShareKey"
# The experiment tag MLflow names its primary metric (the 3.17 UI seeds its Chart view with it).
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"


def view_id(metric: str) -> str:
    """The view's id (and tag suffix, and URL value) for ``metric``: ``automl-val_accuracy``."""
    return "automl-" + re.sub(r"[^A-Za-z0-9_-]", "-", metric)


def view_name(metric: str) -> str:
    """The view's name in the *Views* menu."""
    return f"Trials by {metric}"


def view_state(metric: str, mode: str, params: Sequence[str] = ()) -> dict[str, Any]:
    """The page state the view opens: every run, sorted by ``metric`` (best first), its columns chosen."""
    columns = [f"metrics.`{metric}`", f"metrics.`best_{metric}`", "tags.`automl.state`"]
    columns += [f"params.`{name}`" for name in params]
    columns.append("attributes.`Models`")
    return {
        "searchFilter": "",
        "orderByKey": f"metrics.`{metric}`",
        "orderByAsc": mode == "min",
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
    }


def view_tag(metric: str, mode: str, params: Sequence[str], now_ms: int, current: str | None = None) -> str | None:
    """The tag value of the view for ``metric``, or ``None`` when ``current`` already shows the same."""
    state = json.dumps(view_state(metric, mode, params))
    created = now_ms
    if current:
        try:
            envelope = json.loads(current)
            if envelope.get("state") == state and envelope.get("name") == view_name(metric):
                return None
            created = int(envelope.get("createdAt") or now_ms)
        except (ValueError, TypeError, AttributeError):
            pass
    return json.dumps({"name": view_name(metric), "createdAt": created, "updatedAt": now_ms, "state": state})


def view_link(experiment_id: str, metric: str) -> str:
    """The link (relative to the UI) that opens the view for ``metric``."""
    return f"#/experiments/{experiment_id}/runs?{VIEW_URL_PARAM}={view_id(metric)}&workflowType=machine_learning"


def label_experiment(client: Any, experiment_id: str, name: str, *, metric: str | None, mode: str, params: Sequence[str]) -> None:
    """Give experiment ``name`` the job's metric: the primary metric tag, the saved view of its
    runs by ``metric``, and the description linking it; only the tags that changed are written.

    Args:
        client: an ``MlflowClient`` on the experiment's store.
        metric: the job's (primary) metric; ``None`` writes the description only.
        mode: ``min`` or ``max``: which end of ``metric`` is best.
        params: the hyperparameter names, shown as columns by the view.
    """
    current = client.get_experiment(experiment_id).tags
    wanted: dict[str, str | None] = {}
    if metric:
        wanted[PRIMARY_METRIC_TAG] = metric
        key = f"{VIEW_TAG_PREFIX}{view_id(metric)}"
        wanted[key] = view_tag(metric, mode, params, now_ms(), current.get(key))
    if is_experiment_note(current.get(NOTE, ""), name):
        view = (view_name(metric), view_link(experiment_id, metric)) if metric else None
        wanted[NOTE] = experiment_note(name, metric=metric, mode=mode, view=view)
    for key, value in wanted.items():
        if value is not None and current.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)


__all__ = [
    "PRIMARY_METRIC_TAG",
    "VIEW_TAG_PREFIX",
    "VIEW_URL_PARAM",
    "label_experiment",
    "view_id",
    "view_link",
    "view_name",
    "view_state",
    "view_tag",
]
