"""The job store, on SQLite and on a real PostgreSQL server: queue, leases, events, migrations,
and the progress snapshot that ``automl status`` reads instead of the Optuna study."""

from __future__ import annotations

import multiprocessing
import random
import time
from datetime import datetime

import pytest
from sqlalchemy import column, create_engine, insert, inspect, table

from automl.errors import AutomlError
from automl.results import TrialSummary, pareto_front, top_trials
from automl.store import InvalidJobId, JobNotFound, open_store
from automl.store.migrate import MIGRATIONS, current_revision, upgrade
from automl.store.schema import HEAD_REVISION
from automl.store.snapshot import TOP_K, JobSnapshot, SnapshotBuilder


def _submit(store, name: str = "job", trials: int = 3):
    return store.submit(name=name, spec_yaml=f"name: {name}\n", trials_total=trials)


def test_migrations_bring_an_empty_database_to_head(store_url: str) -> None:
    engine = create_engine(store_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == HEAD_REVISION
    tables = set(inspect(engine).get_table_names())
    assert {"automl_jobs", "automl_job_events", "automl_alembic_version"} <= tables
    assert "snapshot" in {c["name"] for c in inspect(engine).get_columns("automl_jobs")}
    upgrade(engine)  # a second upgrade is a no-op
    assert current_revision(engine) == HEAD_REVISION


def test_head_revision_constant_is_the_newest_migration() -> None:
    # open_store skips Alembic when the database is at HEAD_REVISION: the two must not drift.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_a_job_written_before_the_snapshot_migration_survives_it(store_url: str) -> None:
    engine = create_engine(store_url)
    upgrade(engine, "0001")
    now = datetime(2026, 1, 1)  # noqa: DTZ001 - the store keeps naive UTC times
    columns = ("id", "name", "spec_yaml", "state", "created_at", "updated_at", "study_name", "trials_total")
    jobs_0001 = table("automl_jobs", *[column(name) for name in columns])
    with engine.begin() as connection:  # a row as the 0001 schema wrote it
        connection.execute(
            insert(jobs_0001).values(
                id="01d000000001",
                name="old",
                spec_yaml="name: old\n",
                state="queued",
                created_at=now,
                updated_at=now,
                study_name="old-01d000000001",
                trials_total=3,
            )
        )
    store = open_store(store_url)  # migrates to head
    assert current_revision(engine) == HEAD_REVISION
    old = store.get("01d000000001")
    assert old.snapshot is None, "no snapshot: status falls back to the study"
    assert old.trials_total == 3 and old.state == "queued"
    new = store.submit(name="new", spec_yaml="name: new\n", trials_total=2)
    assert new.snapshot == JobSnapshot() and store.get(new.id).snapshot == JobSnapshot()


def test_progress_and_snapshot_are_stored_together(store_url: str) -> None:
    store = open_store(store_url)
    job = _submit(store)
    store.claim("r", lease_s=30)
    trials = [
        TrialSummary(0, "COMPLETE", 0.5, {"x": 0.1, "k": 2, "c": "a"}, values=(0.5,)),
        TrialSummary(1, "PRUNED", None, {"x": 0.9}),
    ]
    snapshot = JobSnapshot.of_trials(trials, ["min"])
    store.record_progress(job.id, "r", finished=2, best_value=0.5, snapshot=snapshot)
    seen = store.get(job.id)
    assert seen.trials_finished == 2 and seen.best_value == 0.5
    assert seen.snapshot == snapshot and seen.snapshot.counts == {"COMPLETE": 1, "PRUNED": 1}
    assert seen.snapshot.top[0].params == {"x": 0.1, "k": 2, "c": "a"}
    store.record_snapshot(job.id, "r", JobSnapshot.of_trials(trials[:1], ["min"]))
    assert store.get(job.id).snapshot.counts == {"COMPLETE": 1}
    store.record_snapshot(job.id, "someone-else", JobSnapshot())  # only the holder writes
    assert store.get(job.id).snapshot.counts == {"COMPLETE": 1}


def _random_trials(rng: random.Random, n: int, objectives: int) -> list[TrialSummary]:
    trials = []
    for number in rng.sample(range(n), n):  # finishing out of order, as concurrent trials do
        state = rng.choice(["COMPLETE"] * 6 + ["PRUNED", "FAIL", "RUNNING"])
        # Few distinct values: ties in the ranking and duplicate points on the front.
        values = tuple(float(rng.randint(0, 6)) for _ in range(objectives)) if state == "COMPLETE" else None
        value = values[0] if values else (0.1 if state == "PRUNED" else None)
        trials.append(TrialSummary(number, state, value, {"x": rng.random()}, values=values))
    return trials


@pytest.mark.parametrize("directions", [["min"], ["max"], ["min", "max"], ["max", "max", "min"]])
def test_snapshot_built_trial_by_trial_matches_the_whole_study(directions: list[str]) -> None:
    rng = random.Random(len(directions) * 10 + (directions[0] == "max"))
    for n in (0, 1, 7, 60):
        trials = _random_trials(rng, n, len(directions))
        builder = SnapshotBuilder(directions)
        for trial in trials:
            builder.add(trial)
        snapshot = builder.snapshot()
        in_order = sorted(trials, key=lambda t: t.number)
        finished = [t for t in trials if t.state != "RUNNING"]
        assert snapshot.finished == len(finished)
        assert snapshot.counts == {s: sum(t.state == s for t in finished) for s in {t.state for t in finished}}
        assert [t.number for t in snapshot.top] == [t.number for t in top_trials(in_order, directions[0], TOP_K)]
        expected_front = pareto_front(in_order, directions) if len(directions) > 1 else []
        assert [t.number for t in snapshot.pareto] == [t.number for t in expected_front]
        assert JobSnapshot.from_json(snapshot.to_json()) == snapshot
        assert JobSnapshot.of_trials(in_order, directions) == snapshot, "the order trials finish in does not matter"


def test_a_trial_reported_twice_counts_once() -> None:
    builder = SnapshotBuilder(["min"])
    builder.add(TrialSummary(3, "COMPLETE", 1.0, {}, values=(1.0,)))
    builder.add(TrialSummary(3, "COMPLETE", 1.0, {}, values=(1.0,)))
    builder.add(TrialSummary(4, "FAIL", None, {}))
    snapshot = builder.snapshot()
    assert snapshot.counts == {"COMPLETE": 1, "FAIL": 1} and [t.number for t in snapshot.top] == [3]


def test_submit_get_list_and_events(store_url: str) -> None:
    store = open_store(store_url)
    first = _submit(store, "first")
    second = _submit(store, "second")
    assert store.get(first.id).state == "queued"
    assert store.get(first.id[:6]).id == first.id  # a unique prefix is enough
    assert [j.id for j in store.list()] == [second.id, first.id]  # newest first
    assert [j.id for j in store.list(states=("running",))] == []
    assert [e.kind for e in store.events(first.id)] == ["submitted"]
    with pytest.raises(JobNotFound, match="no job with id 'ffffffffffff'"):
        store.get("ffffffffffff")
    # What cannot name one job is refused before any query: "" matched every id.
    for text in ("", first.id[:3], "zzzz", "3c_2", first.id + "0", "f" * 100_000):
        with pytest.raises(InvalidJobId, match="job id"):
            store.get(text)


def test_claim_takes_oldest_and_only_once(store_url: str) -> None:
    store = open_store(store_url)
    first, second = _submit(store, "a"), _submit(store, "b")
    got = store.claim("runner-1", lease_s=30)
    assert got is not None and got.id == first.id and got.state == "running" and got.runner_id == "runner-1"
    assert store.claim("runner-2", lease_s=30).id == second.id
    assert store.claim("runner-3", lease_s=30) is None


def test_expired_lease_is_reclaimed_and_the_old_runner_loses_it(store_url: str) -> None:
    store = open_store(store_url)
    job = _submit(store)
    assert store.claim("dead", lease_s=0.3) is not None
    assert store.claim("alive", lease_s=30) is None  # lease still valid
    time.sleep(0.5)
    reclaimed = store.claim("alive", lease_s=30)
    assert reclaimed is not None and reclaimed.runner_id == "alive" and reclaimed.attempts == 2
    assert store.renew(job.id, "dead", lease_s=30) is False
    assert store.renew(job.id, "alive", lease_s=30) is True
    assert store.finish(job.id, "dead", "succeeded", message="late") is False  # a lost lease cannot finish
    events = store.events(job.id)
    assert [e.kind for e in events] == ["submitted", "claimed", "reclaimed"]
    assert "dead" in events[-1].message


def test_renewed_lease_is_not_reclaimed(store_url: str) -> None:
    store = open_store(store_url)
    job = _submit(store)
    store.claim("holder", lease_s=0.6)
    for _ in range(4):
        time.sleep(0.25)
        assert store.renew(job.id, "holder", lease_s=0.6)
        assert store.claim("thief", lease_s=30) is None


def test_finish_release_and_progress(store_url: str) -> None:
    store = open_store(store_url)
    job = _submit(store)
    store.claim("r", lease_s=30)
    store.record_progress(job.id, "r", finished=2, best_value=0.5)
    store.record_tracking(job.id, "r", experiment_id="7", run_id="abc")
    assert store.release(job.id, "r", message="stopping")
    released = store.get(job.id)
    assert released.state == "queued" and released.runner_id is None and released.trials_finished == 2
    assert released.mlflow_run_id == "abc"
    store.claim("r2", lease_s=30)
    assert store.finish(job.id, "r2", "succeeded", message="done")
    done = store.get(job.id)
    assert done.state == "succeeded" and done.finished_at is not None and done.lease_expires_at is None
    assert [e.kind for e in store.events(job.id)] == ["submitted", "claimed", "released", "claimed", "succeeded"]


def test_cancel_queued_and_running(store_url: str) -> None:
    store = open_store(store_url)
    queued, running = _submit(store, "q"), _submit(store, "r")
    assert store.cancel(queued.id).state == "cancelled"
    assert store.claim("r", lease_s=30).id == running.id
    assert not store.cancel_requested(running.id)
    view = store.cancel(running.id)
    assert view.state == "running" and view.cancel_requested
    assert store.cancel_requested(running.id)
    assert store.finish(running.id, "r", "cancelled", message="cancelled")
    with pytest.raises(AutomlError, match="already cancelled"):
        store.cancel(running.id)
    assert store.claim("other", lease_s=30) is None  # a cancelled job never runs


def _submit_many(url: str, prefix: str, count: int) -> list[str]:
    store = open_store(url)
    return [store.submit(name=f"{prefix}-{i}", spec_yaml="x: 1\n", trials_total=1).id for i in range(count)]


def _claim_all(url: str, runner: str, barrier, results) -> None:  # barrier, results: multiprocessing objects
    store = open_store(url)
    store.list(limit=1)  # connected and warm before the race starts
    barrier.wait()  # every runner starts claiming at the same moment
    claimed = []
    while (job := store.claim(runner, lease_s=60)) is not None:
        claimed.append(job.id)
        time.sleep(0.002)  # a runner starts its job: the others get their turns at the queue
    results.put(claimed)


def test_concurrent_submissions_from_processes_lose_no_job(store_url: str) -> None:
    open_store(store_url)  # migrate once, so the racing processes only submit
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        batches = pool.starmap(_submit_many, [(store_url, f"p{n}", 10) for n in range(4)])
    ids = [job_id for batch in batches for job_id in batch]
    assert len(ids) == len(set(ids)) == 40
    assert {j.id for j in open_store(store_url).list(limit=100)} == set(ids)


def test_racing_runners_never_claim_the_same_job(store_url: str) -> None:
    store = open_store(store_url)
    submitted = {_submit(store, f"j{i}").id for i in range(60)}
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    runners = [context.Process(target=_claim_all, args=(store_url, f"runner-{n}", barrier, results)) for n in range(4)]
    for process in runners:
        process.start()
    claims = [results.get(timeout=120) for _ in runners]
    for process in runners:
        process.join(timeout=30)
    claimed = [job_id for batch in claims for job_id in batch]
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert set(claimed) == submitted
    assert sum(1 for batch in claims if batch) >= 2, "the runners did not race"
    for job in store.list(limit=100):
        assert job.state == "running" and job.attempts == 1


def test_processes_opening_an_empty_postgresql_store_at_once_all_open_it(postgres_url: str) -> None:
    """Servers and runners started together on a new database: one migrates, the others wait for it."""
    import subprocess
    import sys

    opener = "import sys; from automl.store import open_store; open_store(sys.argv[1]).list(limit=1); print('ok')"
    openers = [
        subprocess.Popen([sys.executable, "-c", opener, postgres_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in openers]
    assert [p.returncode for p in openers] == [0, 0, 0, 0], [err[-800:] for _, err in results]
