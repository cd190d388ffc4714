"""The Optuna side of a job: one RDB storage per URL per process, and what a study already holds.

What must stay true: a process opens one storage per URL (the jobs a runner runs side by side
share it); two processes creating the schema of a fresh database at once both end up with it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from automl.errors import AutomlError, SpecError, exception_chain
from automl.retry import retrying
from automl.settings import redact_url
from automl.spaces import SearchSpace
from automl.sqlite import set_up_connections
from automl.states import TrialState, from_optuna

if TYPE_CHECKING:
    import optuna

    from automl.engine.plan import SearchPlan
    from automl.spec import JobSpec


def warm_start_configs(spec: JobSpec, storage: Any, plan: SearchPlan) -> list[dict[str, Any]]:
    """The configurations to evaluate first: the spec's own, then an earlier study's best trials."""
    configs = [dict(c) for c in spec.warm_start.configs]
    source = spec.warm_start.from_study
    if source is None:
        return configs
    import optuna

    try:
        earlier = optuna.load_study(study_name=source, storage=storage)
    except KeyError:
        raise SpecError(f"warm_start.from_study: no study {source!r} in the Optuna storage") from None
    done = [t for t in earlier.get_trials(deepcopy=False) if from_optuna(t.state) == TrialState.COMPLETE and t.values]
    maximize = earlier.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.values[0], reverse=maximize)
    names = set(plan.space.params) if isinstance(plan.space, SearchSpace) else None
    for trial in done[: spec.warm_start.top]:
        params = dict(trial.params)
        if names is None or set(params) == names:
            configs.append(params)
    return configs


def prior_trials(storage: Any, study_name: str) -> list[Any]:
    """The trials of ``study_name`` if the study exists (a resumed job), else none."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False)


def name_metrics(study: optuna.Study, metrics: Sequence[str]) -> None:
    """Name the study's objectives after the job's metrics (optuna-dashboard labels its plots with
    them), unless they are named already (a resumed job)."""
    import optuna

    if study.metric_names is not None:
        return
    with warnings.catch_warnings():
        # "experimental" since Optuna 3.2, unchanged since; the names are a label, not a contract.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(metrics))


_STORAGES: dict[str, Any] = {}
_STORAGES_LOCK = threading.Lock()
logger = logging.getLogger(__name__)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """One Optuna RDB storage per URL per process, shared by the jobs a runner runs side by side."""
    import optuna

    with _STORAGES_LOCK:
        if url in _STORAGES:
            return _STORAGES[url]
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # Wait for a lock instead of failing at once when another process writes.
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 30}}
        else:
            # A server restart leaves the pool's connections dead: test each before use.
            kwargs["engine_kwargs"] = {"pool_pre_ping": True}
        try:
            # Two processes creating the schema of a new database at once: the loser's CREATE
            # TABLE finds the table made ("already exists") or its stamp of the schema version
            # finds the winner's (an IntegrityError); on the retry the schema is there.
            storage = retrying(
                lambda: optuna.storages.RDBStorage(url, **kwargs),
                retryable=_lost_schema_race,
                window_s=10.0,
                first_pause_s=0.5,
                max_pause_s=0.5,
                max_attempts=3,
                what="a new study database's schema",
                logger=logger,
                level=logging.INFO,
            )
        except Exception as exc:
            raise AutomlError(f"cannot open the Optuna storage {redact_url(url)}: {exc}") from exc
        if url.startswith("sqlite"):
            # Optuna opens SQLite in rollback-journal mode, which syncs the disk several times per
            # commit, and a trial is several commits; readers no longer block the writer either.
            set_up_connections(storage.engine, synchronous="NORMAL")
            storage.engine.dispose()  # connections opened while creating the schema get the pragmas too
        _STORAGES[url] = storage
        return storage


def _lost_schema_race(exc: BaseException) -> bool:
    """Whether opening a storage failed because another process was creating its schema too."""
    from sqlalchemy.exc import IntegrityError

    return any(isinstance(e, IntegrityError) or "already exists" in str(e) for e in exception_chain(exc))
