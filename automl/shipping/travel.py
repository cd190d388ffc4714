"""Where a job runs: its code package unpacked on this machine, its data file made fetchable by
every node, and its provenance for the job's MLflow run, all read from the job store by hash.

What must stay true: a runner needs nothing of the submitter's disk; everything here comes from
the job row and the blobs it names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from automl.shipping.provenance import Provenance

if TYPE_CHECKING:
    from automl.engine.plan import SearchPlan
    from automl.settings import Settings
    from automl.store import JobStore, JobView

CODE_CACHE = "code"  # under the state directory: one folder per package hash


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
    from automl.engine.cluster import ensure_ray
    from workers.data_cache import DataRef, is_object_uri

    if job.data_sha256 is None or job.data_source is None:
        return plan
    blob = None
    if not is_object_uri(job.data_source):
        import ray

        ensure_ray(settings.ray_address)
        blob = ray.put(store.blobs.get(job.data_sha256))
    name = job.data_source.rstrip("/").rpartition("/")[2]
    ref = DataRef(name=name, sha256=job.data_sha256, source=job.data_source, blob=blob)
    return dataclasses.replace(plan, trial_plan=dataclasses.replace(plan.trial_plan, data_file=ref))


def job_provenance(store: JobStore, job: JobView) -> Provenance | None:
    """The job's code and data hashes, and its package's bytes, for its MLflow run."""
    if job.code_sha256 is None and job.data_sha256 is None:
        return None
    code_zip = store.blobs.get(job.code_sha256) if job.code_sha256 else None
    return Provenance(job.code_sha256, code_zip, job.data_sha256, job.data_source)
