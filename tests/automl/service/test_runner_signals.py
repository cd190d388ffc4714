"""A runner run inside a longer-lived process hands Ctrl-C and SIGTERM back when it returns.

``Runner.run`` points SIGINT and SIGTERM at itself while it runs (after ``ray.init``, which
installs its own). A test session, a notebook or a user's script that runs a runner in-process
must get its own handlers back: before this was kept, pytest ignored Ctrl-C for the rest of a
session once any test had run a runner in the test process.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("interrupt_cancels", [False, True])
def test_a_runner_gives_back_the_signal_handlers_it_found(automl_home: Path, interrupt_cancels: bool) -> None:
    from automl.service import open_job_store
    from automl.service.runner import Runner
    from automl.settings import resolve_settings

    def ours(signum: int, frame: object) -> None:  # a handler that is neither Python's nor the runner's
        raise AssertionError("not called")

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGTERM, ours)
        settings = resolve_settings()
        runner = Runner(open_job_store(settings), settings, poll_s=0.05)
        runner.run(until_idle=True, interrupt_cancels=interrupt_cancels)  # an empty queue: back at once
        assert signal.getsignal(signal.SIGTERM) is ours
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
