"""The job service: submitting jobs (:mod:`~automl.service.submit`), the runners that claim and
run them (:mod:`~automl.service.runner`), and reading a job back (:mod:`~automl.service.job_results`).
The queue itself is :mod:`automl.store`; the search a runner runs is :mod:`automl.engine`.

What must stay true: importing it loads no heavy library (``automl status`` and ``list`` use it);
each operation imports what it needs when it runs.
"""

from __future__ import annotations

from automl.service.job_results import best_of_job, job_snapshot, snapshot_from_study, study_directions, study_trials
from automl.service.runner import Runner
from automl.service.submit import CheckedJob, check_job_file, check_tracking, enqueue, job_settings, open_job_store, rerun

__all__ = [
    "CheckedJob",
    "Runner",
    "best_of_job",
    "check_job_file",
    "check_tracking",
    "enqueue",
    "job_settings",
    "job_snapshot",
    "open_job_store",
    "rerun",
    "snapshot_from_study",
    "study_directions",
    "study_trials",
]
