"""The tracking writer's own logic: order, merging a run's queued updates, holding writes while
the server is down. The calls are plain functions recording what they were given; the real
MLflow path is covered end to end by the search tests and tests/faults/test_fault_tracking.py."""

from __future__ import annotations

import threading

from automl.tracking import RunUpdate
from automl.tracking.writer import TrackingWriter


def blocked_writer() -> tuple[TrackingWriter, threading.Event, list[tuple[str, object]]]:
    """A writer whose first write waits for the returned event, so the next writes queue up."""
    calls: list[tuple[str, object]] = []
    gate, entered = threading.Event(), threading.Event()
    writer = TrackingWriter(lambda message: calls.append(("error", message)))
    writer.submit(lambda: (entered.set(), gate.wait(10), calls.append(("gate", None))))
    assert entered.wait(10)
    return writer, gate, calls


def test_updates_of_one_run_that_queue_together_become_one_write_in_the_first_ones_place() -> None:
    writer, gate, calls = blocked_writer()
    record = lambda name: lambda update: calls.append((name, update))  # noqa: E731
    writer.submit(lambda: calls.append(("create-a", None)))
    first = writer.submit_update("a", RunUpdate(params={"lr": 0.1}), record("a"))
    writer.submit(lambda: calls.append(("create-b", None)))
    writer.submit_update("b", RunUpdate(params={"lr": 0.2}), record("b"))
    writer.submit_update("a", RunUpdate.report({"loss": 1.0}, 1), record("a"))
    writer.submit_store(lambda: calls.append(("store", None)))
    writer.submit_update("a", RunUpdate.report({"loss": 0.5}, 2), record("a"))
    last = writer.submit_update("a", RunUpdate.end("COMPLETE"), record("a"))
    gate.set()
    writer.flush()
    writer.close()

    assert [name for name, _ in calls] == ["gate", "create-a", "a", "create-b", "b", "store"]
    merged = calls[2][1]
    assert isinstance(merged, RunUpdate)
    assert merged.params == {"lr": 0.1}
    assert [(key, value, step) for key, value, step, _ in merged.metrics] == [("loss", 1.0, 1), ("loss", 0.5, 2)]
    assert merged.tags == {"automl.state": "COMPLETE"} and merged.end_status == "FINISHED"
    assert writer.merged == 3
    assert first.done() and last.done()  # every caller's future is resolved by the merged write


def test_a_write_submitted_while_the_writer_is_idle_goes_out_alone() -> None:
    calls: list[RunUpdate] = []
    writer = TrackingWriter(lambda message: None)
    writer.submit_update("a", RunUpdate(params={"lr": 0.1}), calls.append).result(timeout=10)
    writer.submit_update("a", RunUpdate.end("PRUNED"), calls.append).result(timeout=10)
    writer.close()
    assert [c.params for c in calls] == [{"lr": 0.1}, {}]
    assert calls[1].end_status == "FINISHED" and writer.merged == 0  # a pruned trial's run is not drawn as failed


def test_later_tags_win_and_the_end_is_kept_when_a_tag_update_follows_it() -> None:
    merged = RunUpdate.end("FAIL", reason="boom", error_text="Traceback", end_time=5).merged(RunUpdate(tags={"automl.pbt": "x"}))
    assert merged.end_status == "FAILED" and merged.error_text == "Traceback"
    assert merged.end_time == 5  # when the trial ended, not when a later tag was written
    assert merged.tags == {"automl.state": "FAIL", "automl.fail_reason": "boom", "automl.pbt": "x"}
    assert RunUpdate(tags={"automl.state": "RUNNING"}).merged(RunUpdate.end("COMPLETE")).tags["automl.state"] == "COMPLETE"


def test_held_writes_are_replayed_in_order_once_the_server_answers() -> None:
    up = threading.Event()
    calls: list[str] = []

    def write(name: str) -> None:
        if not up.is_set():
            raise ConnectionError("server down")
        calls.append(name)

    writer = TrackingWriter(lambda message: calls.append(f"error: {message}"), reachable=up.is_set, retry_s=0.05)
    writer.submit(write, "create")
    writer.submit_update("a", RunUpdate(params={"x": 1}), lambda update: write(f"update {update.params}"))
    store = writer.submit_store(lambda: calls.append("store"))
    assert store.result(timeout=10) is None and calls == ["store"]  # the job store does not wait for MLflow
    up.set()
    writer.flush(wait_s=5)
    writer.close()
    assert calls == ["store", "create", "update {'x': 1}"]
    assert writer.replayed == 2 and writer.untracked == 0


def test_writes_still_held_when_the_grace_ends_are_counted_as_untracked() -> None:
    errors: list[str] = []

    def down() -> None:
        raise ConnectionError("server down")

    writer = TrackingWriter(errors.append, reachable=lambda: False, retry_s=0.05)
    writer.submit(down)
    writer.submit_update("a", RunUpdate(params={"x": 1}), lambda update: down())
    writer.flush(wait_s=0.2)
    writer.close()
    assert writer.untracked == 2
    assert errors == ["the MLflow tracking server did not come back: 2 tracking writes were not recorded"]


def test_a_write_whose_connection_broke_is_held_and_replayed_even_while_the_server_still_accepts() -> None:
    """A server being killed can still accept a TCP connection for a moment, after cutting off the
    answer to a request it carried out: that write is held and sent again as its replay (find the
    run the server made), not dropped, so the trial's later updates still find their run."""
    import http.client

    calls: list[str] = []
    attempts = iter(["cut off", "ok"])

    def create() -> str:
        if next(attempts) == "cut off":
            try:
                raise http.client.IncompleteRead(b"", 936)
            except http.client.IncompleteRead as cause:
                raise RuntimeError("API request to .../runs/create failed with exception ...") from cause
        calls.append("create")
        return "run-1"

    def find_or_create() -> str:
        calls.append("find_or_create")
        return "run-1"

    errors: list[str] = []
    writer = TrackingWriter(errors.append, reachable=lambda: True, retry_s=0.05)
    created = writer.submit(create, replay=find_or_create)
    writer.submit_update("a", RunUpdate(params={"x": 1}), lambda update: calls.append("update"))
    writer.flush(wait_s=5)
    writer.close()
    assert created.result(timeout=5) == "run-1"
    assert calls == ["find_or_create", "update"] and errors == []
    assert writer.replayed == 2


def test_an_error_the_server_answered_is_not_held() -> None:
    errors: list[str] = []

    def refused() -> None:
        raise ValueError("RESOURCE_DOES_NOT_EXIST: run not found")

    writer = TrackingWriter(errors.append, reachable=lambda: True, retry_s=0.05)
    result = writer.submit(refused)
    writer.flush(wait_s=1)
    writer.close()
    assert result.result(timeout=5) is None and writer.holding == 0 and writer.replayed == 0
    assert errors == ["refused: ValueError: RESOURCE_DOES_NOT_EXIST: run not found"]


def test_both_ways_of_writing_trial_runs_fit_the_trial_runs_seam() -> None:
    """The Tune callback writes trial runs through automl.tracking.TrialRuns: the tracker itself, or
    the writer process's stand-in; mypy checks the signatures, this checks nothing is missing."""
    from automl.engine.write_behind import RemoteTrialRuns
    from automl.tracking import MlflowTracker, TrialRuns

    assert isinstance(RemoteTrialRuns(remote=None), TrialRuns)  # type: ignore[arg-type]
    assert all(
        callable(getattr(MlflowTracker, name, None))
        for name in ("create_trial_run", "find_or_create_trial_run", "update_run", "reopen_trial")
    )
