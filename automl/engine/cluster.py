"""Where trials run: connecting to (or starting) Ray, and what the cluster can give a trial.

What must stay true: an unreachable cluster or a trial asking for more than the whole cluster
has fails in seconds with one line, not after Tune has waited for resources that never come.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from automl.errors import AutomlError, SpecError

if TYPE_CHECKING:
    from automl.spec import JobSpec


def default_concurrency(spec: JobSpec) -> int:
    import ray

    cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1) if ray.is_initialized() else (os.cpu_count() or 1)
    return max(1, int(cpus // spec.resources.cpus_per_trial))


def ensure_ray(address: str | None, *, runtime_env: dict[str, Any] | None = None) -> None:
    """Connect to the Ray cluster at ``address``, or start a local Ray sized to this machine.

    Reuses an instance already started in this process (tests share one). ``runtime_env`` is the
    Ray job's environment (a job's own driver ships its code package as ``working_dir`` with it).

    Raises:
        AutomlError: the cluster cannot be reached.
    """
    import ray

    if ray.is_initialized():
        return
    if address and address != "auto":
        _check_reachable(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
            runtime_env=runtime_env,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if "InvalidAuthToken" in f"{exc} {exc.__cause__}" or "AuthenticationError" in f"{exc} {exc.__cause__}":
            raise AutomlError(
                f"the Ray cluster at {address} refused this driver's token: it uses token authentication. "
                "Set RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH."
            ) from exc
        raise AutomlError(
            f"cannot connect to the Ray cluster at {address}: {exc}. Check the address, or unset RAY_ADDRESS to run locally."
        ) from exc


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at a Ray address (``ray.init`` waits long)."""
    from automl.netcheck import check_tcp

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise AutomlError(f"the Ray address {address!r} is not host:port (or ray://host:port, or auto)")
    check_tcp(
        host,
        int(port),
        what=f"the Ray cluster at {address}",
        hint="Check that the head node is up (ray start --head) and the address, or unset RAY_ADDRESS to run locally.",
    )


def check_resources(spec: JobSpec) -> None:
    """Refuse a job whose trials ask for more than the whole Ray cluster has: Tune would wait forever.

    Raises:
        SpecError: naming ``resources.cpus_per_trial`` or ``resources.gpus_per_trial``.
    """
    import ray

    total = ray.cluster_resources()
    for field, key, asked in (
        ("cpus_per_trial", "CPU", spec.resources.cpus_per_trial),
        ("gpus_per_trial", "GPU", spec.resources.gpus_per_trial),
    ):
        have = float(total.get(key, 0.0))
        if asked > have:
            hint = " Lower it, or point RAY_ADDRESS at a cluster with GPUs." if key == "GPU" else " Lower it."
            raise SpecError(f"resources.{field}: each trial asks for {asked:g} {key}, the Ray cluster has {have:g}.{hint}")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Keep Tune's tables, Optuna's per-trial lines and MLflow's info logs off the terminal."""
    import mlflow  # noqa: F401 - imported first: it sets its own log levels on import
    import optuna

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A trial that reports without the job's metric fails alone (see trial_outcome); Tune's
    # strict check would end the whole search instead.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "auto")
    names = ("ray.tune", "ray.train", "ray.air", "mlflow", "alembic")
    loggers = {name: logging.getLogger(name) for name in names}
    levels = {name: lg.level for name, lg in loggers.items()}
    previous_optuna = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for lg in loggers.values():
        # Failed trials are reported by the service itself (table, MLflow, events), once.
        lg.setLevel(logging.CRITICAL if lg.name.startswith("ray") else logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous_optuna)
        for name, lg in loggers.items():
            lg.setLevel(levels[name])
