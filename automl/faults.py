"""A test seam: make this process die at a named point, to prove that a crash there loses nothing.

``AUTOML_FAULT=<point>[:<n>]`` makes the process exit at once, like ``kill -9`` (``os._exit``:
no cleanup, no atexit, no flush), the ``n``-th time (default: the first) it passes ``<point>``.
Unset, a point costs one environment lookup. Used by ``tests/faults/``; never set it in
production. The points:

- ``trial_reported``: a trial sent its final report; nothing about its end is recorded yet.
- ``trial_recorded``: the Optuna study has the trial's end; MLflow and the job row do not yet.
- ``job_finishing``: every trial is recorded; the job row is not final yet.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

ENV = "AUTOML_FAULT"
EXIT_CODE = 86
POINTS = ("trial_reported", "trial_recorded", "job_finishing")
_passed: Counter[str] = Counter()
_lock = threading.Lock()


def fault_point(name: str) -> None:
    """Exit the process now if ``AUTOML_FAULT`` names this point and this is the pass it counts to."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    with _lock:
        _passed[name] += 1
        if _passed[name] < int(nth or 1):
            return
    os.write(2, f"{ENV}: exiting at {name} (pass {_passed[name]})\n".encode())
    os._exit(EXIT_CODE)
