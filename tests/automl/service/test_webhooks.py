"""Webhooks when a job ends, against real HTTP receivers on loopback: signed bodies that carry the
result, retries with backoff, giving up, exactly one delivery per hook with two notifiers on one store
(SQLite and PostgreSQL), a receiver that hangs holding up nothing, no old news after the migration,
no secret of a URL in a job's events; and a real `automl worker` whose job calls its spec's hook."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from sqlalchemy import column, create_engine, insert, table

from automl.errors import InputError
from automl.results import TrialSummary
from automl.service import check_job_file, enqueue
from automl.service.notify import Notifier, backoff_s, notifier_from_env
from automl.states import JobState
from automl.store import JobStore, JobView, open_store
from automl.store.deliveries import Outgoing
from automl.store.migrate import upgrade
from automl.store.snapshot import JobSnapshot
from automl.webhooks import shown_url, signature_header, verify_signature

SECRET = "whsec-test-0123456789"
RUNNER = "runner-1"


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver on 127.0.0.1: records every call and answers from ``answers`` (the last
    one repeats); with ``hang``, answers nothing until released (or 30 s)."""

    def __init__(self, answers: tuple[int, ...] = (200,), *, hang: bool = False) -> None:
        self.calls: list[Call] = []
        self.answers = list(answers)
        self.hang = hang
        self.released = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.calls.append(Call(self.path, dict(self.headers.items()), body, time.monotonic()))
                    status = receiver.answers.pop(0) if len(receiver.answers) > 1 else receiver.answers[0]
                if receiver.hang:
                    receiver.released.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(*answers: int, hang: bool = False) -> Receiver:
        made.append(Receiver(answers or (200,), hang=hang))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return open_store(f"sqlite:///{tmp_path / 'jobs.db'}")


def finished_job(
    store: JobStore,
    *,
    hooks: tuple[str, ...] = (),
    state: str = JobState.SUCCEEDED,
    early: str | None = None,
    name: str = "hooked",
) -> JobView:
    """A job driven through the store as a runner drives it: submitted, claimed, three trials, ended."""
    spec = {"name": name, "metric": "loss", "mode": "min", "notify": {"webhooks": list(hooks)}}
    job = store.submit(name=name, spec_yaml=yaml.safe_dump(spec), trials_total=3)
    if state == JobState.CANCELLED:
        store.cancel(job.id)
        return store.get(job.id)
    assert store.claim(RUNNER, lease_s=30, job_id=job.id) is not None
    store.record_tracking(job.id, RUNNER, experiment_id="7", run_id="run0123")
    trials = [
        TrialSummary(0, "COMPLETE", 0.5, {"lr": 0.1}, values=(0.5,)),
        TrialSummary(1, "COMPLETE", 0.25, {"lr": 0.01}, values=(0.25,)),
        TrialSummary(2, "PRUNED", None, {"lr": 0.9}),
    ]
    snapshot = JobSnapshot.of_trials(trials, ["min"])
    store.record_progress(job.id, RUNNER, finished=3, best_value=0.25, snapshot=snapshot)
    if early is not None:
        store.add_event(job.id, "stopped_early", f"stopped early: {early}", runner_id=RUNNER)
    error = "no trial completed" if state == JobState.FAILED else None
    assert store.finish(job.id, RUNNER, state, message=f"ended {state}", error=error)
    return store.get(job.id)


def drain(notifier: Notifier, done: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll until ``done()``, as the notifier's thread would, only faster."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out waiting for the deliveries"
        notifier.poll_once()
        time.sleep(0.01)


def settled(store: JobStore, job_id: str) -> bool:
    """The job's deliveries are queued and each delivered or given up."""
    deliveries = store.deliveries.of_job(job_id)
    return bool(deliveries) and all(d.done for d in deliveries)


def webhook_events(store: JobStore, job_id: str) -> list[str]:
    return [e.message for e in store.events(job_id, limit=100) if e.kind == "webhook"]


# -- the body and its signature -----------------------------------------------------------------


def test_a_finished_job_sends_one_signed_delivery_with_its_result(store_url: str, receivers) -> None:
    store = open_store(store_url)
    receiver = receivers()
    job = finished_job(store, hooks=(receiver.url(),))
    notifier = Notifier(store, secret=SECRET)
    assert notifier.poll_once() == 1
    assert notifier.poll_once() == 0, "delivered once: nothing more to send"

    (call,) = receiver.calls
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["X-Automl-Event"] == "job.succeeded"
    assert verify_signature(SECRET, call.body, call.headers["X-Automl-Signature"])
    assert not verify_signature("another secret", call.body, call.headers["X-Automl-Signature"])
    assert not verify_signature(SECRET, call.body.replace(b"0.25", b"0.99"), call.headers["X-Automl-Signature"])
    body = call.json
    assert body["event"] == "job.succeeded" and str(body["delivery"]) == call.headers["X-Automl-Delivery"]
    result = body["job"]
    assert result["id"] == job.id and result["name"] == "hooked" and result["state"] == "succeeded"
    assert (result["metric"], result["mode"], result["metrics"], result["modes"]) == ("loss", "min", ["loss"], ["min"])
    assert result["best_value"] == 0.25 and result["best_params"] == {"lr": 0.01}
    assert [t["number"] for t in result["top_trials"]] == [1, 0]
    assert result["trials_total"] == 3 and result["trials_finished"] == 3
    assert result["trial_counts"] == {"COMPLETE": 2, "PRUNED": 1}
    assert result["mlflow"] == {"experiment_id": "7", "run_id": "run0123"}
    assert result["error"] is None and result["stopped_early"] is None
    assert result["finished_at"].endswith("Z") and result["owner"] is None

    (delivery,) = store.deliveries.of_job(job.id)
    assert delivery.delivered_at is not None and delivery.done and delivery.attempts == 1 and delivery.status_code == 200
    (event,) = webhook_events(store, job.id)
    assert event == f"job.succeeded delivered to http://127.0.0.1:{receiver.server.server_port}/… (HTTP 200, 1 attempt)"


@pytest.mark.parametrize(
    ("state", "early", "event"),
    [
        (JobState.SUCCEEDED, "target 0.3 reached", "job.stopped_early"),
        (JobState.FAILED, None, "job.failed"),
        (JobState.CANCELLED, None, "job.cancelled"),
    ],
)
def test_each_way_a_job_ends_has_its_event(store: JobStore, receivers, state: str, early: str | None, event: str) -> None:
    receiver = receivers()
    finished_job(store, hooks=(receiver.url(),), state=state, early=early)
    Notifier(store, secret=SECRET).poll_once()
    (call,) = receiver.calls
    assert call.headers["X-Automl-Event"] == event == call.json["event"]
    assert call.json["job"]["state"] == state
    assert call.json["job"]["stopped_early"] == early
    if state == JobState.FAILED:
        assert call.json["job"]["error"] == "no trial completed"


def test_an_early_stop_of_an_earlier_attempt_does_not_count(store: JobStore, receivers) -> None:
    receiver = receivers()
    spec = yaml.safe_dump({"name": "resumed", "notify": {"webhooks": [receiver.url()]}})
    job = store.submit(name="resumed", spec_yaml=spec, trials_total=2)
    store.claim(RUNNER, lease_s=30)
    store.add_event(job.id, "stopped_early", "stopped early: patience", runner_id=RUNNER)
    store.release(job.id, RUNNER, message="runner stopping")
    store.claim("runner-2", lease_s=30)
    store.finish(job.id, "runner-2", JobState.SUCCEEDED, message="done")
    Notifier(store).poll_once()
    assert receiver.calls[0].json["event"] == "job.succeeded"


def test_signature_checks_refuse_replays_and_malformed_headers() -> None:
    body = b'{"event":"job.succeeded"}'
    header = signature_header(SECRET, body, now=1_000_000)
    assert verify_signature(SECRET, body, header, now=1_000_100)
    assert not verify_signature(SECRET, body, header, now=1_000_000 + 301), "older than the tolerance: a replay"
    assert verify_signature(SECRET, body, f"{header},v1=deadbeef", now=1_000_000), "any v1 may match"
    for bad in (None, "", "v1=abc", "t=x,v1=abc", "t=1000000", "t=1000000,v1=é"):
        assert not verify_signature(SECRET, body, bad, now=1_000_000)


def test_without_a_secret_calls_go_unsigned(store: JobStore, receivers) -> None:
    receiver = receivers()
    finished_job(store, hooks=(receiver.url(),))
    Notifier(store).poll_once()
    assert "X-Automl-Signature" not in receiver.calls[0].headers


# -- retries, giving up --------------------------------------------------------------------------


def test_a_failing_receiver_is_retried_with_backoff_and_delivered_once(store: JobStore, receivers) -> None:
    receiver = receivers(500, 500, 200)
    job = finished_job(store, hooks=(receiver.url(),))
    notifier = Notifier(store, secret=SECRET, backoff_base_s=0.2)
    drain(notifier, lambda: settled(store, job.id))
    for _ in range(3):
        notifier.poll_once()

    assert len(receiver.calls) == 3
    assert len({c.body for c in receiver.calls}) == 1, "every retry sends the same bytes"
    assert len({c.headers["X-Automl-Delivery"] for c in receiver.calls}) == 1
    assert all(verify_signature(SECRET, c.body, c.headers["X-Automl-Signature"]) for c in receiver.calls)
    first_wait, second_wait = (b.at - a.at for a, b in zip(receiver.calls, receiver.calls[1:], strict=False))
    assert first_wait >= 0.2 * 0.9 and second_wait >= 0.4 * 0.9, "the wait doubles after each failure"
    (delivery,) = store.deliveries.of_job(job.id)
    assert delivery.delivered_at is not None and delivery.attempts == 3 and delivery.status_code == 200
    assert delivery.last_error is None
    (event,) = webhook_events(store, job.id)
    assert "delivered" in event and "3 attempts" in event


def test_a_receiver_that_never_answers_2xx_is_given_up_with_an_event(store: JobStore, receivers) -> None:
    receiver = receivers(503)
    job = finished_job(store, hooks=(receiver.url(),))
    notifier = Notifier(store, max_attempts=3, backoff_base_s=0.01)
    drain(notifier, lambda: settled(store, job.id))
    time.sleep(0.1)
    notifier.poll_once()

    assert len(receiver.calls) == 3
    (delivery,) = store.deliveries.of_job(job.id)
    assert delivery.gave_up_at is not None and delivery.delivered_at is None and delivery.next_at is None
    assert delivery.attempts == 3 and delivery.status_code == 503 and delivery.last_error == "HTTP 503 Service Unavailable"
    (event,) = webhook_events(store, job.id)
    assert "job.succeeded" in event and "gave up after 3 attempts" in event and "HTTP 503" in event


def test_backoff_doubles_up_to_its_cap() -> None:
    waits = [backoff_s(n, base_s=2.0, cap_s=300.0) for n in range(1, 12)]
    for wait, nominal in zip(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300], strict=True):
        assert 0.9 * nominal <= wait <= 1.1 * nominal


# -- many notifiers, many hooks -------------------------------------------------------------------


def test_two_notifiers_on_one_store_deliver_each_job_exactly_once(store_url: str, receivers) -> None:
    receiver = receivers()
    first, second = open_store(store_url), open_store(store_url)  # two processes' worth of connections
    jobs = [finished_job(first, hooks=(receiver.url(),), name=f"job{i}") for i in range(6)]
    notifiers = [Notifier(first, secret=SECRET), Notifier(second, secret=SECRET)]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def race(notifier: Notifier) -> None:
        try:
            start.wait()
            for _ in range(4):
                notifier.poll_once()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    threads = [threading.Thread(target=race, args=(n,)) for n in notifiers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert sorted(c.json["job"]["id"] for c in receiver.calls) == sorted(j.id for j in jobs)
    for job in jobs:
        (delivery,) = first.deliveries.of_job(job.id)
        assert delivery.delivered_at is not None and delivery.attempts == 1
        assert len(webhook_events(first, job.id)) == 1


def test_queueing_and_claiming_are_won_by_one(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    job = finished_job(first, hooks=("http://127.0.0.1:9/hook",))
    outgoing = [Outgoing("http://127.0.0.1:9/hook", "job.succeeded", lambda i: json.dumps({"delivery": i}))]
    assert [j.id for j in first.deliveries.unnotified()] == [job.id]
    queued = first.deliveries.queue(job.id, outgoing)
    assert queued is not None and json.loads(queued[0].payload) == {"delivery": queued[0].id}
    assert second.deliveries.queue(job.id, outgoing) is None, "notified already: queued once"
    assert second.deliveries.unnotified() == []

    (held,) = first.deliveries.claim_due(lease_s=0.3)
    assert second.deliveries.claim_due(lease_s=0.3) == [], "held by the first notifier"
    time.sleep(0.4)  # the first one's sender died: its lease runs out
    (again,) = second.deliveries.claim_due(lease_s=30)
    assert again.id == held.id and again.attempts == 2
    assert not first.deliveries.failed(held, status_code=None, error="late", retry_in_s=1), "a stale sender records nothing"
    assert second.deliveries.delivered(again, status_code=204)
    assert not first.deliveries.delivered(held, status_code=200), "delivered is recorded once"
    assert len(webhook_events(first, job.id)) == 1


def test_a_jobs_own_hook_and_the_servers_both_fire(store: JobStore, receivers) -> None:
    own, server = receivers(), receivers()
    job = finished_job(store, hooks=(own.url("/mine"), server.url("/all")))  # the same URL twice: called once
    notifier = Notifier(store, server_hooks=[server.url("/all"), server.url("/audit")], secret=SECRET)
    assert notifier.poll_once() == 3
    assert [c.path for c in own.calls] == ["/mine"]
    assert sorted(c.path for c in server.calls) == ["/all", "/audit"]
    deliveries = {c.headers["X-Automl-Delivery"] for c in [*own.calls, *server.calls]}
    assert len(deliveries) == 3, "one delivery id per hook"
    assert all(c.json["job"]["id"] == job.id for c in [*own.calls, *server.calls])


def test_server_hooks_and_secret_come_from_the_environment(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOML_WEBHOOKS", " https://a.example/h , http://b.example:8080/x,")
    monkeypatch.setenv("AUTOML_WEBHOOK_SECRET", SECRET)
    notifier = notifier_from_env(store)
    assert notifier.server_hooks == ("https://a.example/h", "http://b.example:8080/x") and notifier.secret == SECRET
    monkeypatch.setenv("AUTOML_WEBHOOKS", "https://a.example/h,ftp://user:pw@files.example/drop")
    with pytest.raises(InputError, match=r"AUTOML_WEBHOOKS: URL 2 of 2 \(ftp://files.example/…\)") as refused:
        notifier_from_env(store)
    assert "pw" not in str(refused.value)


# -- nothing is held up ----------------------------------------------------------------------------


def test_a_hanging_receiver_holds_up_neither_the_other_hooks_nor_a_look(store: JobStore, receivers) -> None:
    hanging, good = receivers(hang=True), receivers()
    job = finished_job(store, hooks=(hanging.url(), good.url()))
    notifier = Notifier(store, timeout_s=0.3, backoff_base_s=60)
    started = time.monotonic()
    assert notifier.poll_once() == 2
    assert time.monotonic() - started < 2.0
    late, done = store.deliveries.of_job(job.id)
    assert done.delivered_at is not None and len(good.calls) == 1
    assert late.next_at is not None and late.delivered_at is None and "Timeout" in (late.last_error or "")


def test_stop_returns_promptly_while_a_call_hangs(store: JobStore, receivers) -> None:
    hanging = receivers(hang=True)
    finished_job(store, hooks=(hanging.url(),))
    notifier = Notifier(store, timeout_s=30, poll_s=0.05).start()
    deadline = time.monotonic() + 10
    while not hanging.calls:
        assert time.monotonic() < deadline, "the notifier's thread never called"
        time.sleep(0.02)
    started = time.monotonic()
    notifier.stop()
    assert time.monotonic() - started < 1.5


# -- old news, secrets ----------------------------------------------------------------------------


def test_a_job_that_ended_before_the_migration_fires_nothing(tmp_path: Path, receivers) -> None:
    receiver = receivers()
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    upgrade(engine, "0004")
    now = datetime(2026, 1, 1)  # noqa: DTZ001 - the store keeps naive UTC times
    columns = ("id", "name", "spec_yaml", "state", "runner_id", "created_at", "updated_at", "study_name", "trials_total")
    spec = yaml.safe_dump({"name": "old", "notify": {"webhooks": [receiver.url()]}})
    rows = [("0000000000a1", "succeeded", None), ("0000000000a2", "running", RUNNER)]
    with engine.begin() as connection:  # rows as the 0004 schema wrote them
        for job_id, state, runner in rows:
            values = dict(zip(columns, (job_id, "old", spec, state, runner, now, now, f"old-{job_id}", 2), strict=True))
            connection.execute(insert(table("automl_jobs", *[column(c) for c in columns])).values(**values))
    engine.dispose()
    store = open_store(url)  # migrates to head
    notifier = Notifier(store, server_hooks=[receiver.url("/all")])
    assert notifier.poll_once() == 0 and receiver.calls == [], "old news: no webhook"
    assert store.finish("0000000000a2", RUNNER, JobState.SUCCEEDED, message="done after the migration")
    assert notifier.poll_once() == 2, "a job that ends after the migration is news"
    assert {c.json["job"]["id"] for c in receiver.calls} == {"0000000000a2"}


def test_no_secret_of_a_url_reaches_an_event_or_a_log(store: JobStore, receivers, caplog: pytest.LogCaptureFixture) -> None:
    ok, failing = receivers(), receivers(401)
    # httpx writes this one back with "%C3%A9" for the "é": hidden all the same.
    secret_url = ok.url("/hooks/PATHSECRET-é?token=TOKENSECRET").replace("127.0.0.1", "alice:PASSSECRET@127.0.0.1")
    failing_url = failing.url("/x/PATHSECRET2?sig=SIGSECRET").replace("127.0.0.1", "bob:PASSSECRET2@127.0.0.1")
    job = finished_job(store)
    caplog.set_level(logging.DEBUG)
    notifier = Notifier(store, server_hooks=[secret_url, failing_url], max_attempts=1)
    assert notifier.poll_once() == 2
    assert len(ok.calls) == 1 and ok.calls[0].headers["Authorization"].startswith("Basic "), "the user part still authenticates"
    events = " ".join(webhook_events(store, job.id))
    assert "delivered to http://127.0.0.1" in events and "gave up after 1 attempt;" in events
    for secret in ("PASSSECRET", "PATHSECRET", "TOKENSECRET", "SIGSECRET", "alice", "bob"):
        assert secret not in events
        assert secret not in caplog.text
    assert f"POST http://127.0.0.1:{ok.server.server_port}/…" in caplog.text, "httpx's own line, the URL shortened"
    assert shown_url(secret_url) == f"http://127.0.0.1:{ok.server.server_port}/…"


# -- end to end ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_calls_the_jobs_hook_when_it_succeeds(tmp_path: Path, ray_session: None, receivers) -> None:
    import ray

    receiver = receivers()
    spec = {
        "name": "hooked-iris",
        "trainer": {"name": "mlp", "dataset": "iris"},
        "space": "mlp-small",
        "metric": "val_accuracy",
        "mode": "max",
        "budget": {"trials": 2, "max_epochs": 1},
        "tracking": {"register_model": False, "plots": False},
        "notify": {"webhooks": [receiver.url("/done")]},
    }
    path = tmp_path / "hooked.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOML_", "MLFLOW_"))}
    env |= {"AUTOML_HOME": str(tmp_path / "home"), "AUTOML_WEBHOOK_SECRET": SECRET}
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address  # this session's Ray, as runners drive a cluster

    (tmp_path / "home").mkdir()
    store = open_store(f"sqlite:///{tmp_path / 'home' / 'jobs.db'}")
    job_id = enqueue(store, check_job_file(path)).id  # as `automl submit` does, without its process
    worker = subprocess.run(
        [sys.executable, "-m", "automl.cli", "worker", "--until-idle", "--poll", "0.2"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert worker.returncode == 0, worker.stderr

    (call,) = receiver.calls  # delivered before the worker exited
    assert call.path == "/done" and call.headers["X-Automl-Event"] == "job.succeeded"
    assert verify_signature(SECRET, call.body, call.headers["X-Automl-Signature"])
    result = call.json["job"]
    assert result["id"] == job_id and result["state"] == "succeeded" and result["trials_finished"] == 2
    assert (result["metric"], result["mode"]) == ("val_accuracy", "max")
    assert isinstance(result["best_value"], float) and set(result["best_params"]) >= {"learning_rate"}
    assert result["mlflow"]["run_id"]
    assert any("delivered" in message for message in webhook_events(store, job_id))
