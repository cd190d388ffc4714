"""What the job commands print besides the views (:mod:`automl.cli.views`): a followed job's progress
bar, the metric names a status view shows, and stdout kept for the ``--json`` document alone.

What must stay true: with ``--json``, stdout holds the document and nothing else, whatever Ray's
threads print on descriptor 1; following a job reads only its stored row, never its study.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from automl.cli.exits import err, guard

if TYPE_CHECKING:
    from automl.service.job_service import JobService
    from automl.store import JobView


def progress_factory() -> Any:
    """What the runner calls for each job it runs here: a live progress bar on stderr."""
    from automl.cli.progress import RichProgress

    return lambda job: RichProgress(err)


def follow(store: JobService, job: JobView, *, quiet: bool) -> JobView:
    """Poll a job until it ends, drawing a progress bar from its stored progress."""
    from automl.cli.progress import RichProgress

    bar = None if quiet else RichProgress(err, label=job.name)
    if bar is not None:
        bar.start(job.trials_total)
    seen = 0
    job_id = job.id
    try:
        while True:
            job = guard(lambda: store.get(job_id))
            if bar is not None:
                while seen < job.trials_finished:
                    bar.trial_done("finished", job.best_value)
                    seen += 1
            if job.is_final:
                return job
            time.sleep(1.0)
    finally:
        if bar is not None:
            bar.stop()


def metrics_of(job: JobView) -> list[str]:
    """The job's metric names, primary first, from its queued spec (resolved at submit)."""
    import yaml

    raw = (yaml.safe_load(job.spec_yaml) or {}).get("metric") or "value"
    return [str(m) for m in raw] if isinstance(raw, list) else [str(raw)]


@contextlib.contextmanager
def stdout_to_stderr(active: bool) -> Iterator[TextIO | None]:
    """Send everything written to file descriptor 1 to stderr from now on; yield the real stdout.

    With ``--json``, stdout must hold the JSON alone; Ray prints notices (a node marked
    dead, a worker's log line) on the driver's stdout from its own threads, and may still do
    so after the job has ended (seen in CI), so descriptor 1 is not given back: the JSON is
    written to the real stdout, which the caller gets (``None`` when not ``active``).
    """
    if not active:
        yield None
        return
    sys.stdout.flush()
    try:
        on_descriptor_1 = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):
        on_descriptor_1 = False  # stdout replaced in-process (a test's CliRunner): fd 1 is given back after the run
    saved = os.dup(1)
    os.dup2(2, 1)
    if on_descriptor_1:
        real = os.fdopen(saved, "w", encoding="utf-8")
        try:
            yield real
        finally:
            real.close()
        return
    try:
        yield sys.stdout
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
