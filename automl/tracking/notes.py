"""The Markdown the MLflow UI shows as descriptions: a job experiment's, and a job run's result.

What must stay true: a job run's note starts with ``RESULT_PREFIX`` once the job has a result,
and the spec's own description follows ``SUMMARY_END``, so a resumed job rewrites its summary
and keeps the description. No MLflow import (pure text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automl.states import TrialState
from automl.tracking.runs import TAG_PREFIX, trial_run_name

NOTE = "mlflow.note.content"  # what the MLflow UI shows as a run's or an experiment's description
RESULT_PREFIX = "**Result**: "  # how a job's summary starts; the spec's description follows it
SUMMARY_END = "\n\n---\n\n"
STATE_WORDS: dict[str, str] = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
}


EXPERIMENT_NOTE_START = "Hyperparameter search jobs `"  # how our experiment descriptions start


def experiment_note(name: str, *, metric: str | None = None, mode: str = "", view: tuple[str, str] | None = None) -> str:
    """The description of a job's experiment, in Markdown: what its runs are and how to filter them.

    With ``metric`` and ``view`` (the name and link of the experiment's saved view of its runs by
    that metric, :mod:`~automl.tracking.views`), it opens with a link to that view.
    """
    note = (
        f"{EXPERIMENT_NOTE_START}{name}`: one run per job; expand it (⊞) for its trials, "
        "`trial-000-<job id>`, `trial-001-<job id>`, ... (the job id ends its run's name). A job's run "
        "holds its result (Description), its search plots (Artifacts, `plots/`) and its spec (`job/`); "
        "the best trial's model is registered, and the best version of all is `@champion`.\n\n"
        "Filter the trials by state: `tags.automl.state = 'FAIL'` (or `'PRUNED'`, `'COMPLETE'`); "
        "the jobs only: `tags.automl.kind = 'job'`."
    )
    if metric and view:
        # First: the UI shows a description's first lines until "Show more".
        order = "lowest" if mode == "min" else "highest"
        note = f"**[Every run by `{metric}`, {order} first]({view[1]})** (the view *{view[0]}* under *Views*). " + note
    return note


def is_experiment_note(note: str, name: str) -> bool:
    """Whether ``note`` is a description we wrote for experiment ``name`` (or none): one a person wrote is kept."""
    return not note or f"{EXPERIMENT_NOTE_START}{name}`" in note


def summary_note(
    *,
    state: str,
    counts: Mapping[str, int],
    metrics: Mapping[str, float],
    best_params: Mapping[str, Any],
    tags: Mapping[str, str],
    experiment_id: str,
    job_id: str = "",
    plots: bool = False,
) -> str:
    """A job's result in Markdown, for its parent run's description in the MLflow UI (``job_id``: the
    job's short id, in its trial runs' names)."""
    states = (*STATE_WORDS, *sorted(set(counts) - set(STATE_WORDS)))
    parts = [f"{counts[s]} {STATE_WORDS.get(s, s.lower())}" for s in states if counts.get(s)]
    total = sum(counts.values())
    head = f"{RESULT_PREFIX}**{state}**, {total} trial{'s' if total != 1 else ''}" + (f" ({', '.join(parts)})" if parts else "")
    best = next(((k.removeprefix("best_"), v) for k, v in metrics.items() if k.startswith("best_")), None)
    if best is not None:
        trial, run_id = tags.get(f"{TAG_PREFIX}best_trial"), tags.get(f"{TAG_PREFIX}best_run_id")
        where = ""
        if trial is not None:
            name = trial_run_name(int(trial), job_id)
            where = f" in [{name}](#/experiments/{experiment_id}/runs/{run_id})" if run_id else f" in {name}"
        head += f". Best `{best[0]}`: **{best[1]:.6g}**{where}"
    lines = [head + "."]
    if best_params:
        lines += ["", "Best hyperparameters: " + ", ".join(f"`{k}` = {_short(v)}" for k, v in best_params.items()) + "."]
    lines.append("")
    if tags.get(f"{TAG_PREFIX}best_model_uri"):
        lines.append(f"Model: `{tags[f'{TAG_PREFIX}best_model_uri']}`. ")
    if plots:
        lines.append("Plots: the `plots/` artifacts (optimization history, parallel coordinates, importances). ")
    lines.append("Trials by state: search `tags.automl.state = 'PRUNED'` (or `'COMPLETE'`, `'FAIL'`).")
    return "\n".join(lines)


def description_of(note: str) -> str:
    """The spec's description in a parent run's note, without the summary a finish put before it."""
    if note.startswith(RESULT_PREFIX):
        return note.split(SUMMARY_END, 1)[1] if SUMMARY_END in note else ""
    return note


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
