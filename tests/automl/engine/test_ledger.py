"""The search's trial ledger on its own: counting ends, the best value, early stopping, timeouts
and kept tracking errors (what settling, the stopper, the summary and PBT read from it)."""

from __future__ import annotations

import logging

import pytest

from automl.engine.ledger import TrialLedger
from automl.engine.study_search import INTERRUPTED, TrialOutcome
from automl.states import TrialState


def complete(value: float) -> TrialOutcome:
    return TrialOutcome(TrialState.COMPLETE, value, None)


def test_a_trial_is_counted_finished_once_however_often_its_end_is_reported() -> None:
    ledger = TrialLedger("loss", "min")
    record = ledger.open("t1", 0, {"lr": 0.1})
    assert ledger.end(record, complete(0.5)) is True
    # Tune's complete callback and the settle after a stop may both report the same trial.
    assert ledger.end(record, TrialOutcome(TrialState.FAIL, None, "late")) is False
    assert ledger.finished == 1
    assert record.outcome is not None and record.outcome.state == TrialState.COMPLETE
    assert ledger.best_value == 0.5


def test_an_interrupted_trial_can_still_end_when_the_job_settles() -> None:
    ledger = TrialLedger("loss", "min")
    record = ledger.open("t1", 3, {})
    record.outcome = TrialOutcome(INTERRUPTED, None, "the runner stopped")
    assert ledger.end(record, TrialOutcome(TrialState.FAIL, None, "the job was cancelled")) is True
    assert ledger.finished == 1


@pytest.mark.parametrize(("mode", "values", "best"), [("min", [0.5, 0.7, 0.2, 0.3], 0.2), ("max", [0.5, 0.7, 0.2, 0.3], 0.7)])
def test_the_best_value_follows_the_mode_and_only_complete_trials(mode: str, values: list[float], best: float) -> None:
    ledger = TrialLedger("m", mode)
    for i, value in enumerate(values):
        ledger.end(ledger.open(f"t{i}", i, {}), complete(value))
    ledger.end(ledger.open("pruned", 99, {}), TrialOutcome(TrialState.PRUNED, -100.0 if mode == "min" else 100.0, None))
    assert ledger.best_value == best
    assert ledger.by_number()[99].ray_trial_id == "pruned"


def test_a_resumed_job_counts_from_what_it_had_already_finished() -> None:
    ledger = TrialLedger("acc", "max", finished=7, best_value=0.9, target=0.95)
    ledger.end(ledger.open("t", 7, {}), complete(0.85))
    assert (ledger.finished, ledger.best_value, ledger.early_stop_reason()) == (8, 0.9, None)
    ledger.end(ledger.open("u", 8, {}), complete(0.96))
    assert ledger.early_stop_reason() == "the target acc 0.95 was reached (0.96)"


def test_patience_counts_trials_since_the_last_new_best() -> None:
    ledger = TrialLedger("loss", "min", patience=2)
    ledger.end(ledger.open("a", 0, {}), complete(1.0))
    ledger.end(ledger.open("b", 1, {}), complete(2.0))
    assert ledger.early_stop_reason() is None
    ledger.end(ledger.open("c", 2, {}), TrialOutcome(TrialState.FAIL, None, "boom"))
    assert ledger.early_stop_reason() == "no new best loss in the last 2 trials"
    ledger.end(ledger.open("d", 3, {}), complete(0.5))
    assert ledger.early_stop_reason() is None


def test_a_timeout_is_read_while_the_trial_fails_and_forgotten_when_it_is_retried() -> None:
    ledger = TrialLedger("loss", "min")
    ledger.time_out("t", "timed out after 2 s")
    assert ledger.timeout_reason("t") == "timed out after 2 s"
    assert ledger.timeout_reason("t", clear=True) == "timed out after 2 s"
    assert ledger.timeout_reason("t") is None


def test_a_failing_tracking_write_is_kept_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    ledger = TrialLedger("loss", "min")

    def log_model() -> str:
        raise ConnectionError("refused")

    with caplog.at_level(logging.WARNING):
        assert ledger.safely(log_model) is None
    assert ledger.safely(lambda: "ok") == "ok"
    assert ledger.tracking_errors == ["log_model: ConnectionError: refused"]
    assert "MLflow tracking failed: log_model: ConnectionError: refused" in caplog.text
