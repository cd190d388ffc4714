"""MLflow tracking of a job: one experiment, a parent run per job, a child run per trial.

Only the driver (or the job's writer process) writes to MLflow, through ``MlflowClient`` with
explicit run ids (no global active run), one ``log_batch`` per trial update. A trial's run
carries the trial's own start and end times (Optuna's start; its end as Tune reported it), not
those of the writes, and a name unique in its experiment (``trial-011-<job id>``). The best trial's model is logged
to that trial's run as one MLflow model with a ``pytorch`` and a serving ``python_function``
flavour (:mod:`~automl.tracking.servable`), registered in the Model Registry with its origin, and
made the ``champion`` when it beats it (:mod:`~automl.tracking.registry`).
What must stay true: MLflow is imported only when a tracker is made; the fluent (process-wide)
URIs are set only under a lock and put back, environment included (:func:`fluent_uris`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from automl.errors import TrackingError
from automl.settings import redact_url
from automl.sqlite import set_wal_on_file
from automl.states import JobState, MlflowStatus, TrialState
from automl.tracking.fluent import FLUENT_LOCK
from automl.tracking.notes import NOTE, SUMMARY_END, description_of, experiment_note, summary_note
from automl.tracking.registry import ModelOrigin, describe_version, settle_champion
from automl.tracking.runs import TAG_PREFIX, RegisteredModel, RunUpdate, job_short_id, trial_run_name
from automl.tracking.servable import log_servable_model
from automl.tracking.views import label_experiment

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)


class MlflowTracker:
    """Writes one job's runs. Create it with the tracking URI; call :meth:`start_job` first."""

    def __init__(self, tracking_uri: str, *, artifact_root: str | None = None) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        with _sqlite_init_lock(tracking_uri) as database:  # the client opens (and may migrate) the store
            if database:
                set_wal_on_file(database)  # a commit syncs once; the MLflow UI reading it no longer blocks the runner
            self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            if tracking_uri.startswith("sqlite:"):
                with contextlib.suppress(Exception):  # the first real write reports a broken store, naming it
                    self.client.search_registered_models(max_results=1)  # opens the model registry's store too
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._job_id: str | None = None  # the job's short id, in its trial runs' names
        # Against a tracking server, MLflow's client prints "View run ... at: URL" to stdout each time a
        # run ends; stdout belongs to the CLI (`automl run --json` prints its JSON there).
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        if tracking_uri.startswith(("http://", "https://")):
            # MLflow's client retries a failed request 7 times with exponential backoff (minutes);
            # the tracking writer holds and replays writes itself, so a down server should fail fast.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

    def reachable(self) -> bool:
        """Whether the tracking server answers a TCP connection now (a local store always does)."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.tracking_uri)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            return True
        import socket

        try:
            with socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), timeout=2.0):
                return True
        except OSError:
            return False

    def start_job(
        self,
        *,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        artifacts: Mapping[str, str],
        description: str = "",
    ) -> str:
        """Create (or reuse) the experiment and open the job's parent run; return its id.

        ``params["metric"]``, ``params["mode"]`` and ``params["space"]`` (the parameter names), when
        given, make the experiment's saved view of its runs by that metric.

        Raises:
            TrackingError: the tracking store cannot be reached or written.
        """
        from automl.netcheck import check_tracking_server

        check_tracking_server(self.tracking_uri)
        try:
            self.experiment_id = self._ensure_experiment(experiment)
            try:
                self._label_experiment(experiment, params)
            except Exception as exc:  # noqa: BLE001 - labels, never a reason to fail a job
                # Two jobs of one name starting at once both write the same tags, and one insert
                # loses (a unique constraint): the other's labels are there.
                logger.info("MLflow tracking: experiment %s left as it was labelled: %s", experiment, exc)
            run_tags = {**tags, "mlflow.runName": run_name}
            if description:
                run_tags["mlflow.note.content"] = description
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=run_tags)
            self.parent_run_id = run.info.run_id
            self._job_id = job_short_id(run_name, run.info.run_id)
            self.update_run(self.parent_run_id, RunUpdate(params=dict(params)))
            for name, text in artifacts.items():
                self.client.log_text(self.parent_run_id, text, name)
        except Exception as exc:  # MLflow raises many kinds; all mean the same here
            if self.parent_run_id is not None:  # no run left RUNNING for a job that never started
                with contextlib.suppress(Exception):
                    self.client.set_tag(self.parent_run_id, f"{TAG_PREFIX}state", JobState.FAILED)
                    self.client.set_terminated(self.parent_run_id, MlflowStatus.FAILED)
            where = f" (artifacts: {self.artifact_root})" if self.artifact_root else ""
            raise TrackingError(
                f"cannot write to the MLflow tracking store {redact_url(self.tracking_uri)}{where}: {exc}"
            ) from exc
        return self.parent_run_id

    def resume_job(self, parent_run_id: str) -> str:
        """Reopen the parent run of a job that is being resumed; return its id.

        Raises:
            TrackingError: the run cannot be found or written.
        """
        try:
            run = self.client.get_run(parent_run_id)
            self.experiment_id = run.info.experiment_id
            self.parent_run_id = parent_run_id
            self._job_id = job_short_id(run.info.run_name, parent_run_id)
            self.client.update_run(parent_run_id, status=MlflowStatus.RUNNING)
        except Exception as exc:
            raise TrackingError(f"cannot reopen MLflow run {parent_run_id} in {redact_url(self.tracking_uri)}: {exc}") from exc
        return parent_run_id

    def child_runs(self) -> dict[int, Any]:
        """The job's trial runs by trial number (the latest run when a number appears twice)."""
        assert self.experiment_id is not None and self.parent_run_id is not None
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}'",
            max_results=50_000,
        )
        found: dict[int, Any] = {}
        for run in sorted(runs, key=lambda r: r.info.start_time or 0):
            number = run.data.tags.get(f"{TAG_PREFIX}trial_number")
            if number is not None:
                found[int(number)] = run
        return found

    def reopen_trial(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Mark a trial run RUNNING again: its trial is retried after its runner stopped."""
        run = self.client.get_run(run_id)
        attempt = int(run.data.tags.get(f"{TAG_PREFIX}attempt", "1")) + 1
        self.update_run(
            run_id, RunUpdate(tags={**tags, f"{TAG_PREFIX}state": TrialState.RUNNING, f"{TAG_PREFIX}attempt": str(attempt)})
        )
        self.client.update_run(run_id, status=MlflowStatus.RUNNING)

    def _ensure_experiment(self, name: str) -> str:
        """The id of experiment ``name``: made if missing, restored if deleted.

        Jobs of one name started together (two runners, or one runner's two threads) all find no
        experiment and all create it: the losers' creates fail with RESOURCE_ALREADY_EXISTS, and
        each then takes the one the winner made, as MLflow's own ``register_model`` does.
        """
        from mlflow.exceptions import MlflowException

        existing = self.client.get_experiment_by_name(name)
        if existing is None:
            location = f"{self.artifact_root}/{name}" if self.artifact_root else None
            try:
                # The experiment's description in the MLflow UI: how to read what the jobs leave there.
                return self.client.create_experiment(name, artifact_location=location, tags={NOTE: experiment_note(name)})
            except MlflowException as exc:
                existing = self.client.get_experiment_by_name(name) if exc.error_code == "RESOURCE_ALREADY_EXISTS" else None
                if existing is None:
                    raise
        if existing.lifecycle_stage == "deleted":
            try:
                self.client.restore_experiment(existing.experiment_id)
            except MlflowException:
                # Restored by a job started at the same time: then it is active, and that is all we need.
                if self.client.get_experiment(existing.experiment_id).lifecycle_stage != "active":
                    raise
        return existing.experiment_id

    def _label_experiment(self, name: str, params: Mapping[str, Any]) -> None:
        """The experiment's saved view by the job's metric, and its description (:func:`~automl.tracking.views.label_experiment`)."""
        assert self.experiment_id is not None
        metric, space = params.get("metric"), params.get("space")
        label_experiment(
            self.client,
            self.experiment_id,
            name,
            metric=metric if isinstance(metric, str) and metric else None,
            mode=str(params.get("mode") or "max"),
            params=[p.strip() for p in space.split(",") if p.strip()] if isinstance(space, str) else [],
        )

    def trial_run_name(self, number: int) -> str:
        """The run name of trial ``number`` of this job (its short id read once from the job's run)."""
        assert self.parent_run_id is not None
        if self._job_id is None:  # the job's writer process attaches to a run it did not open
            self._job_id = job_short_id(self.client.get_run(self.parent_run_id).info.run_name, self.parent_run_id)
        return trial_run_name(number, self._job_id)

    def start_trial(
        self, number: int, params: Mapping[str, Any], tags: Mapping[str, str], *, start_time: int | None = None
    ) -> str:
        """Open the child run of trial ``number`` with its hyperparameters as params (``start_time``: ms; ``None``: now)."""
        run_id = self.create_trial_run(number, tags, start_time)
        self.update_run(run_id, RunUpdate(params=dict(params)))
        return run_id

    def create_trial_run(self, number: int, tags: Mapping[str, str], start_time: int | None = None) -> str:
        """Open the child run of trial ``number``, RUNNING, with its tags; its params come in an update.

        ``start_time`` (ms since the epoch) is when the trial started; ``None``: now.
        """
        assert self.experiment_id is not None and self.parent_run_id is not None
        name = self.trial_run_name(number)
        run = self.client.create_run(
            self.experiment_id,
            start_time=start_time,
            run_name=name,
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "mlflow.runName": name,
                f"{TAG_PREFIX}trial_number": str(number),
                f"{TAG_PREFIX}state": TrialState.RUNNING,
                **tags,
            },
        )
        return run.info.run_id

    def find_or_create_trial_run(self, number: int, tags: Mapping[str, str], start_time: int | None = None) -> str:
        """:meth:`create_trial_run`, unless the job already has a run for trial ``number`` (a
        create whose answer was lost with the connection): then that run's id."""
        assert self.experiment_id is not None and self.parent_run_id is not None
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' and tags.`{TAG_PREFIX}trial_number` = '{number}'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        return self.create_trial_run(number, tags, start_time)

    def update_run(self, run_id: str, update: RunUpdate) -> None:
        """Apply ``update`` to a run: one ``log_batch``, then its error text and its end if it has them."""
        from mlflow.entities import Metric, Param, RunTag

        if update.metrics or update.params or update.tags:
            self.client.log_batch(
                run_id,
                metrics=[Metric(key, float(value), timestamp, step) for key, value, step, timestamp in update.metrics],
                params=[Param(k, _param_text(v)) for k, v in update.params.items()],
                tags=[RunTag(k, str(v)) for k, v in update.tags.items()],
            )
        if update.error_text:
            self.client.log_text(run_id, update.error_text, "error.txt")
        if update.end_status is not None:
            self.client.set_terminated(run_id, update.end_status, end_time=update.end_time)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Log one report's metrics at ``step`` in a single call."""
        self.update_run(run_id, RunUpdate.report(metrics, step))

    def end_trial(
        self, run_id: str, state: str, *, reason: str | None, error_text: str | None, end_time: int | None = None
    ) -> None:
        """Close a trial's run with the state Optuna recorded for it (``end_time``: ms; ``None``: now)."""
        self.update_run(run_id, RunUpdate.end(state, reason=reason, error_text=error_text, end_time=end_time))

    def finish_job(
        self,
        status: str,
        *,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        plots: bool | None = None,
    ) -> None:
        """Write the job's summary on the parent run and close it with ``status``.

        ``plots``: whether the run has (or is about to get) its search plots; ``None`` looks.
        """
        if self.parent_run_id is None:
            return
        note = self._summary_note(status, metrics, params, tags, plots)
        summary = RunUpdate(params=dict(params), tags={**tags, **({NOTE: note} if note else {})})
        self.update_run(self.parent_run_id, RunUpdate.report(metrics, 0).merged(summary))
        self.client.set_terminated(self.parent_run_id, status)

    def _summary_note(
        self,
        status: str,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        plots: bool | None = None,
    ) -> str | None:
        """The parent run's description: the spec's own, then the job's result in Markdown.

        Trial counts come from ``metrics`` when given, else from the child runs' state tags (a
        cancelled job). ``None`` when the run cannot be read: the summary is never a reason to fail.
        """
        parent_run_id = self.parent_run_id
        if parent_run_id is None:
            return None
        try:
            run = self.client.get_run(parent_run_id)
            counts = {k.removeprefix("trials_").upper(): int(v) for k, v in metrics.items() if k.startswith("trials_")}
            if not counts:
                for child in self.child_runs().values():
                    state = child.data.tags.get(f"{TAG_PREFIX}state", TrialState.RUNNING)
                    counts[state] = counts.get(state, 0) + 1
            description = description_of(run.data.tags.get(NOTE, ""))
            summary = summary_note(
                state=tags.get(f"{TAG_PREFIX}state") or status.lower(),
                counts=counts,
                metrics=metrics,
                best_params={k.removeprefix("best."): v for k, v in params.items() if k.startswith("best.")},
                tags=tags,
                experiment_id=run.info.experiment_id,
                job_id=self._job_id or job_short_id(run.info.run_name, parent_run_id),
                plots=bool(self.client.list_artifacts(parent_run_id, "plots")) if plots is None else plots,
            )
        except Exception as exc:  # noqa: BLE001
            logger.warning("MLflow tracking: the summary of run %s was left out: %s", self.parent_run_id, exc)
            return None
        # The result first: the UI shows the first lines of a description until "Show more".
        return f"{summary}{SUMMARY_END}{description}" if description else summary

    def log_figure_json(self, name: str, payload: Any) -> None:
        """Attach a JSON document to the parent run (the trials table, the best params)."""
        if self.parent_run_id is not None:
            self.client.log_text(self.parent_run_id, json.dumps(payload, indent=2, default=str), name)

    def log_model(
        self,
        run_id: str,
        model: Any,
        *,
        registered_name: str | None,
        metadata: Mapping[str, Any] | None = None,
        origin: ModelOrigin | None = None,
    ) -> RegisteredModel:
        """Log ``model`` to ``run_id`` (:mod:`~automl.tracking.servable`) and register it under ``registered_name``.

        ``metadata`` (what the trial saved with the model: task, class and feature names, input
        shape) goes into the model's MLmodel file and decides its signature and serving. With
        ``origin`` the version gets its description and tags, and the alias ``champion`` when it
        beats the current one (:func:`~automl.tracking.registry.settle_champion`: right also when
        jobs of one name in other processes register at the same time).
        """
        # The fluent URIs are process-wide: one job at a time logs in this process.
        with FLUENT_LOCK:
            logged = log_servable_model(
                self.client,
                self.tracking_uri,
                run_id,
                model,
                registered_name=registered_name,
                info=metadata or {},
                tags=origin.tags() if origin is not None else None,
            )
            if logged.name and logged.version and origin is not None:
                try:
                    describe_version(self.client, logged.name, logged.version, origin)
                    if settle_champion(self.client, logged.name) == str(logged.version):
                        logger.info("model %s version %s is the champion", logged.name, logged.version)
                except Exception as exc:  # noqa: BLE001 - the model is registered: its record is not worth the job's model URI
                    logger.warning(
                        "model %s version %s: its description or champion alias was not written: %s",
                        logged.name,
                        logged.version,
                        exc,
                    )
        return logged


@contextlib.contextmanager
def _sqlite_init_lock(tracking_uri: str) -> Iterator[str | None]:
    """An exclusive file lock beside a local SQLite tracking store, held while it is opened.

    MLflow migrates a new SQLite store when a process first opens it; two runners starting on a
    fresh state directory would both migrate it at once, and one fails ("Online migration
    expected to match one row", "table _alembic_tmp_metrics already exists"), failing its job.
    Under the lock the first one migrates and the others find it done. Cheap afterwards: MLflow
    keeps the opened store per process.
    """
    database = None
    if tracking_uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(tracking_uri).database
    if not database or database == ":memory:" or not os.path.isdir(os.path.dirname(os.path.abspath(database))):
        yield None
        return
    import fcntl

    with open(f"{database}.init-lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield database
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]
