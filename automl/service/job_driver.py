"""A job's own Ray driver: a child process of its runner, for a job whose code travels to a cluster.

Ray gives each driver process one ``runtime_env``, and Tune's trial actors take theirs from the
driver (Tune sets no other per trial), so a runner that runs jobs side by side cannot give each
its own code. A job that ships a code package to a Ray cluster, or that names pip requirements,
runs here instead: ``ray.init(runtime_env={"working_dir": <its unpacked package>, "pip": [...]})``
then the same :meth:`Runner.run_job_here` as any job, holding the runner's lease under the
runner's id. The runner keeps claiming; it sends SIGTERM to release the job and SIGUSR1 to
cancel it. What must stay true: the driver dies with its runner (a runner killed with -9 leaves
its jobs to expire and resume elsewhere, never to a driver nobody watches), and a driver that
ends without settling its job leaves it failed with the reason, not running.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys

from automl.states import JobState

logger = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the runner) dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the runner was already gone before prctl took
        os._exit(1)


ENVIRONMENT_TIMEOUT_S = 900.0  # building a pip environment on a slow node takes minutes, not hours


def environment_problem(timeout_s: float = ENVIRONMENT_TIMEOUT_S) -> str | None:
    """Build the job's Ray environment now, with one empty task, and say why it cannot be built.

    Ray builds a ``runtime_env`` (its pip packages, its working directory) when the first task
    needs it; a requirement pip cannot install would otherwise leave every trial pending for ever.

    Returns:
        ``None`` when the environment is ready, else one line: pip's own error where it gave one.
    """
    import ray
    from ray.exceptions import GetTimeoutError, RuntimeEnvSetupError

    @ray.remote(num_cpus=0)
    def ready() -> bool:
        return True

    try:
        ray.get(ready.remote(), timeout=timeout_s)
    except RuntimeEnvSetupError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")]
        return (errors or lines or ["(Ray gave no reason)"])[-1][:500]
    except GetTimeoutError:
        return f"the job's environment was not ready after {timeout_s:.0f} s"
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m automl.service.job_driver JOB_ID --runner-id ID --lease-s S`` (started by a runner)."""
    parser = argparse.ArgumentParser(prog="automl.service.job_driver", description=__doc__.splitlines()[0])
    parser.add_argument("job_id")
    parser.add_argument("--runner-id", required=True)
    parser.add_argument("--lease-s", type=float, required=True)
    args = parser.parse_args(argv)
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from automl.engine.cluster import ensure_ray
    from automl.service.driver_process import write_result
    from automl.service.runner import Runner
    from automl.service.submit import open_job_store
    from automl.settings import prepare, resolve_settings
    from automl.shipping.travel import job_requirements, runtime_env, unpacked_code

    settings = resolve_settings()
    store = open_job_store(settings)
    job = store.get(args.job_id)
    if job.state != JobState.RUNNING or job.runner_id != args.runner_id:
        logger.error("job %s is %s, held by %s: not this driver's to run", job.id, job.state, job.runner_id)
        return 3
    runner = Runner(store, settings, runner_id=args.runner_id, lease_s=args.lease_s, own_drivers=False)
    prepare(settings)
    code_dir = unpacked_code(store, job, settings)
    assert code_dir is not None  # needs_own_driver: only a job with a code package comes here
    requirements = job_requirements(code_dir, job)
    ensure_ray(settings.ray_address, runtime_env=runtime_env(code_dir, requirements))
    problem = environment_problem()
    if problem is not None:
        what = "install the job's code.requirements" if requirements else "set up the job's code package"
        message = f"the Ray nodes could not {what}: {problem}"
        logger.error("job %s failed: %s", job.id, message)
        store.finish(job.id, args.runner_id, JobState.FAILED, message=message, error=message)
        return 0
    # After ray.init, which installs its own SIGTERM handler.
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGUSR1, runner.cancel_all)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runner.heartbeat.start()
    try:
        runner.run_job_here(job)
    finally:
        runner.heartbeat.stop()
    result = runner.results.get(job.id)
    if result is not None:  # for the runner: `automl run` prints it
        write_result(settings, job.id, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
