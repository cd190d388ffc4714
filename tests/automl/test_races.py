"""Get-or-create races: processes started together that each create the same named thing.

Two runners (or two jobs of one runner) starting jobs with the same name at once both look up
the MLflow experiment, find none, and both create it; both register the best model under the
same name; both open a fresh study database; both create a study (a resumed job's, were two
runners ever to hold it). The loser of each race must take what the winner
made, not fail its job. Each test starts real processes (forked from a server that imported the
libraries once) that wait at a barrier and then make the same call, against a real SQLite store.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

PROCESSES = 3
ROUNDS = 4  # same-named creations per test: one lost race is enough to fail the old code
SCHEMA_ROUNDS = 8  # the schema race is lost one way out of two ("already exists" was handled)


@pytest.fixture(scope="module")
def racers() -> Iterator[multiprocessing.context.BaseContext]:
    """A forkserver context whose server has imported MLflow, Optuna and torch: each racer starts in
    milliseconds, so the processes really do reach the barrier and the create together."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlflow", "mlflow.pytorch", "optuna", "torch", "automl.tracking", "automl.service"])
    yield context


def _racer(target: Callable[..., Any], barrier: Any, results: Any, index: int, args: tuple[Any, ...]) -> None:
    try:
        results.put((index, "ok", target(barrier, index, *args)))
    except BaseException:  # noqa: BLE001 - reported to the test, which names it
        barrier.abort()  # the others stop waiting for this one
        results.put((index, "error", traceback.format_exc()))


def race(context: multiprocessing.context.BaseContext, target: Callable[..., Any], *args: Any) -> list[Any]:
    """Run ``target(barrier, index, *args)`` in ``PROCESSES`` processes at once; their results by index.

    Fails the test naming the first process that raised, with its traceback.
    """
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [context.Process(target=_racer, args=(target, barrier, results, i, args)) for i in range(PROCESSES)]
    for process in processes:
        process.start()
    got = {index: (status, value) for index, status, value in (results.get(timeout=120) for _ in processes)}
    for process in processes:
        process.join(timeout=30)
    errors = [f"process {i}:\n{value}" for i, (status, value) in sorted(got.items()) if status == "error"]
    assert not errors, "\n".join(errors)
    return [got[i][1] for i in range(PROCESSES)]


# -- the racers: module-level, so the forkserver can find them -------------------------------------


def start_same_named_jobs(barrier: Any, index: int, tracking_uri: str, artifact_root: str) -> list[str]:
    """A parent run per round, each in the experiment ``race-<round>`` that every racer creates."""
    from automl.tracking import MlflowTracker

    tracker = MlflowTracker(tracking_uri, artifact_root=artifact_root)
    experiments = []
    for round_ in range(ROUNDS):
        barrier.wait(timeout=60)
        tracker.start_job(experiment=f"race-{round_}", run_name=f"job-{index}", params={}, tags={}, artifacts={})
        experiments.append(tracker.experiment_id)
    return experiments


def register_same_named_models(barrier: Any, index: int, tracking_uri: str, artifact_root: str) -> tuple[str, dict, dict]:
    """A model registered under ``race-model`` by every racer at once (a log_model takes seconds:
    one round); its version, and the MLflow variables of the environment before and after."""
    import os

    import torch

    from automl.tracking import MlflowTracker

    tracker = MlflowTracker(tracking_uri, artifact_root=artifact_root)
    tracker.start_job(experiment="models", run_name=f"job-{index}", params={}, tags={}, artifacts={})
    run_id = tracker.create_trial_run(0, {})
    before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    barrier.wait(timeout=60)
    version = tracker.log_model(run_id, torch.nn.Linear(2, 1), registered_name="race-model").version
    return version, before, {name: os.environ.get(name) for name in before}


def open_fresh_study_databases(barrier: Any, index: int, home: str) -> list[int]:
    """Each round, a fresh study database that every racer opens at once (its schema created then)."""
    from automl.service import study_trials
    from automl.settings import resolve_settings

    found = []
    for round_ in range(SCHEMA_ROUNDS):
        settings = resolve_settings(storage_url=f"sqlite:///{home}/studies-{round_}.db")
        barrier.wait(timeout=60)
        found.append(len(study_trials(settings, "no-such-study")))
    return found


def create_same_named_studies(barrier: Any, index: int, storage_url: str) -> list[int]:
    """Each round, a job's study ``race-<round>`` that every racer's working study creates at once."""
    import optuna

    from automl.engine.working_study import WorkingStudy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(storage_url, engine_kwargs={"connect_args": {"timeout": 30}})
    ids = []
    for round_ in range(ROUNDS):
        barrier.wait(timeout=60)
        study = WorkingStudy(storage, f"race-{round_}", ["minimize"], optuna.samplers.RandomSampler(seed=index))
        ids.append(study.durable._study_id)
    return ids


# -- the tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A migrated SQLite MLflow store and its artifact root, shared by this module's tests (each
    uses its own names). Opening it migrates it, seconds: once here, and the racers only race
    what they create (the migration's race is the init lock's)."""
    from automl.tracking import MlflowTracker

    folder = tmp_path_factory.mktemp("mlflow")
    uri, root = f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()
    MlflowTracker(uri, artifact_root=root)
    return uri, root


def test_same_named_jobs_started_together_share_one_experiment(racers, tracking_store: tuple[str, str]) -> None:
    from mlflow import MlflowClient

    uri, root = tracking_store
    client = MlflowClient(tracking_uri=uri)
    # race-0 was made and deleted: the racers all restore it at once.
    client.delete_experiment(client.create_experiment("race-0", artifact_location=f"{root}/race-0"))
    per_process = race(racers, start_same_named_jobs, uri, root)
    for round_ in range(ROUNDS):
        experiment = client.get_experiment_by_name(f"race-{round_}")
        assert experiment.lifecycle_stage == "active"
        assert {ids[round_] for ids in per_process} == {experiment.experiment_id}, "every job in the one experiment"
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(r.info.run_name for r in runs) == [f"job-{i}" for i in range(PROCESSES)]


def test_same_named_models_registered_together_get_one_version_each(racers, tracking_store: tuple[str, str]) -> None:
    from mlflow import MlflowClient

    uri, root = tracking_store
    MlflowClient(tracking_uri=uri).create_experiment("models", artifact_location=f"{root}/models")
    results = race(racers, register_same_named_models, uri, root)
    versions = sorted(int(version) for version, _, _ in results)
    assert versions == list(range(1, PROCESSES + 1)), versions
    registered = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions("name = 'race-model'")
    assert sorted(int(v.version) for v in registered) == versions
    for _, before, after in results:  # the fluent URIs set for the call are put back, environment too
        assert after == before


def test_loading_the_best_model_leaves_the_environment_as_it_was(
    tracking_store: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import torch

    from automl.results import SearchResult
    from automl.tracking import MlflowTracker

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    uri, root = tracking_store
    tracker = MlflowTracker(uri, artifact_root=root)
    tracker.start_job(experiment="load", run_name="job", params={}, tags={}, artifacts={})
    logged = tracker.log_model(tracker.create_trial_run(0, {}), torch.nn.Linear(2, 1), registered_name=None)
    result = SearchResult(
        job_name="load",
        study_name="load-1",
        storage_url="",
        metric="loss",
        mode="min",
        best_params=None,
        best_value=None,
        best_trial_number=None,
        trials=(),
        experiment_id=tracker.experiment_id,
        parent_run_id=tracker.parent_run_id,
        tracking_uri=uri,
        model_uri=logged.model_uri,
    )
    assert isinstance(result.load_best_model(), torch.nn.Linear)
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ


def test_a_fresh_study_database_opened_together_gets_its_schema_once(racers, tmp_path: Path) -> None:
    assert race(racers, open_fresh_study_databases, str(tmp_path)) == [[0] * SCHEMA_ROUNDS] * PROCESSES


def test_a_study_created_together_is_one_study(racers, tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.storages.RDBStorage(url)  # the schema; its own race is the test above
    per_process = race(racers, create_same_named_studies, url)
    summaries = optuna.study.get_all_study_summaries(url)
    assert sorted(s.study_name for s in summaries) == sorted(f"race-{r}" for r in range(ROUNDS))
    for round_ in range(ROUNDS):
        assert len({ids[round_] for ids in per_process}) == 1, "every racer on the one study"


def test_two_same_named_jobs_run_at_once_both_succeed(automl_home: Path, tmp_path: Path, ray_session: None) -> None:
    """The issue's repro, small: examples/iris.yaml submitted twice, one runner running both at once."""
    import json

    import yaml
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from automl.cli import app
    from automl.settings import resolve_settings

    spec = yaml.safe_load((Path(__file__).parents[2] / "examples" / "iris.yaml").read_text())
    spec.update(budget={"trials": 2, "max_epochs": 1}, scheduler={"name": "fifo"})
    job_file = tmp_path / "iris.yaml"
    job_file.write_text(yaml.safe_dump(spec))
    cli = CliRunner()
    for _ in range(2):
        submitted = cli.invoke(app, ["submit", str(job_file)])
        assert submitted.exit_code == 0, submitted.output
    worked = cli.invoke(app, ["worker", "-n", "2", "--until-idle", "--poll", "0.2"])
    assert worked.exit_code == 0, worked.output
    jobs = json.loads(cli.invoke(app, ["list", "--json"]).stdout)
    assert [(j["name"], j["state"], j["trials_finished"]) for j in jobs] == [("iris-mlp", "succeeded", 2)] * 2, jobs
    client = MlflowClient(tracking_uri=resolve_settings().tracking_uri)
    experiment = client.get_experiment_by_name("iris-mlp")
    # (Logging a model once left MLFLOW_TRACKING_URI set to ./mlflow.db, so this found no experiment.)
    assert experiment is not None, "the jobs tracked to $AUTOML_HOME, where this process still looks"
    assert {j["experiment_id"] for j in jobs} == {experiment.experiment_id}
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.`automl.kind` = 'job'")
    assert sorted(r.info.run_id for r in parents) == sorted(j["mlflow_run_id"] for j in jobs)
    assert all(r.info.status == "FINISHED" for r in parents)
