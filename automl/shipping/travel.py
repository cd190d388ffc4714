"""Where a job runs: its code package unpacked on this machine, its data file made fetchable by
every node, and its provenance for the job's MLflow run, all read from the job store by hash.

What must stay true: a runner needs nothing of the submitter's disk; everything here comes from
the job row and the blobs it names.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.shipping.provenance import Provenance

if TYPE_CHECKING:
    from automl.engine.plan import SearchPlan
    from automl.settings import Settings
    from automl.shipping.data import DataFile
    from automl.store import JobStore, JobView

CODE_CACHE = "code"  # under the state directory: one folder per package hash


# Where the driver's bucket is, passed on to its trials (Tune passes the AWS keys on itself, and
# keys do not belong in a runtime_env, which Ray's state API shows).
PASSED_ENV = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")


def runtime_env(code_dir: Path, requirements: list[str]) -> dict[str, Any]:
    """The Ray job environment of a job's driver: its package as the working directory of every
    trial, on every node, and its requirements installed for it alone."""
    env: dict[str, Any] = {"working_dir": str(code_dir)}
    passed = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
    if passed:
        env["env_vars"] = passed
    if requirements:
        env["pip"] = {"packages": requirements, "pip_check": False}
    return env


def code_cache(settings: Settings) -> Path:
    """This machine's unpacked code packages: ``$AUTOML_HOME/code/<sha256>``."""
    return settings.home / CODE_CACHE


def unpacked_code(store: JobStore, job: JobView, settings: Settings) -> Path | None:
    """The job's code package unpacked on this machine (fetched from the job store the first time);
    ``None`` for a job that ships no code."""
    from automl.shipping.code import unpack

    if job.code_sha256 is None:
        return None
    folder = code_cache(settings) / job.code_sha256
    if folder.is_dir():
        return folder
    return unpack(store.blobs.get(job.code_sha256), job.code_sha256, code_cache(settings))


def job_requirements(code_dir: Path | None, job: JobView) -> list[str]:
    """The pip requirements the job's spec names inside its code package (empty: none)."""
    import yaml

    from automl.shipping.code import read_requirements

    if code_dir is None:
        return []
    requirements = ((yaml.safe_load(job.spec_yaml) or {}).get("code") or {}).get("requirements")
    if not requirements:
        return []
    return read_requirements((code_dir / requirements).read_text(encoding="utf-8", errors="replace"))


def attach_data(plan: SearchPlan, store: JobStore, job: JobView, settings: Settings) -> SearchPlan:
    """``plan`` with the job's data file as every node fetches it: an uploaded file's bytes put in
    Ray's object store once, or the bucket URI each node reads. Ray must be up."""
    from workers.data_cache import is_object_uri

    if job.data_sha256 is None or job.data_source is None:
        return plan
    content = None if is_object_uri(job.data_source) else store.blobs.get(job.data_sha256)
    return with_data_file(plan, job.data_sha256, job.data_source, content, settings)


def attach_local_data(plan: SearchPlan, data: DataFile | None, settings: Settings) -> SearchPlan:
    """``plan`` with a data file read here (``automl.run_job``, no job store) as every node fetches it."""
    if data is None:
        return plan
    return with_data_file(plan, data.sha256, data.source, data.content() if data.upload else None, settings)


def with_data_file(plan: SearchPlan, sha256: str, source: str, content: bytes | None, settings: Settings) -> SearchPlan:
    """``plan`` whose trials fetch the data file ``sha256``: ``content`` through Ray's object store,
    or (``None``) from its bucket, at the S3 endpoint this process uses when the node names none."""
    from automl.engine.cluster import ensure_ray
    from workers.data_cache import DataRef

    blob = None
    if content is not None:
        import ray

        ensure_ray(settings.ray_address)
        blob = ray.put(content)
    endpoint = os.environ.get("AWS_ENDPOINT_URL") if content is None else None
    name = source.rstrip("/").rpartition("/")[2]
    ref = DataRef(name=name, sha256=sha256, source=source, blob=blob, endpoint=endpoint)
    return dataclasses.replace(plan, trial_plan=dataclasses.replace(plan.trial_plan, data_file=ref))


def job_provenance(store: JobStore, job: JobView) -> Provenance | None:
    """The job's code and data hashes, and its package's bytes, for its MLflow run."""
    if job.code_sha256 is None and job.data_sha256 is None:
        return None
    code_zip = store.blobs.get(job.code_sha256) if job.code_sha256 else None
    return Provenance(job.code_sha256, code_zip, job.data_sha256, job.data_source)


def ship_caller_code(objective: object, code_dir: str | Path | bool | None, settings: Settings) -> Provenance | None:
    """For ``automl.search`` on a Ray cluster: ship the objective's project folder as this
    process's Ray ``working_dir``, so its other modules import on every node; ``None`` when
    nothing ships.

    ``code_dir``: the folder to ship; ``None`` (the default): the objective's module folder, when
    the search connects to a cluster (``RAY_ADDRESS``) and the module is the user's own file, not
    an installed one; ``False``: never. Ray must not be running in this process yet (its
    ``runtime_env`` is set once, at ``ray.init``).

    Raises:
        SpecError: the folder is over the size limit (its largest files named).
    """
    import logging
    import sys

    import ray

    from automl.engine.cluster import ensure_ray
    from automl.shipping.code import DEFAULT_MAX_MB, installed_module, pack_folder, unpack

    if code_dir is False or (code_dir is None and not settings.ray_address):
        return None
    folder = Path(code_dir) if isinstance(code_dir, (str, Path)) else None
    if folder is None:
        module = sys.modules.get(getattr(objective, "__module__", "") or "")
        file_name = getattr(module, "__file__", None)
        if not file_name or installed_module(Path(file_name).resolve()):
            return None
        folder = Path(file_name).resolve().parent
    if ray.is_initialized():
        logging.getLogger(__name__).warning(
            "Ray already runs in this process, so the objective's folder %s does not travel with the search; "
            "start Ray with ray.init(runtime_env={'working_dir': ...}) yourself, or let automl.search start it",
            folder,
        )
        return None
    package = pack_folder(folder, max_mb=DEFAULT_MAX_MB, field="code_dir")
    unpacked = unpack(package.content, package.sha256, code_cache(settings))
    ensure_ray(settings.ray_address, runtime_env=runtime_env(unpacked, []))
    return Provenance(code_sha256=package.sha256, code_zip=package.content)
