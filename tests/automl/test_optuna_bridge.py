"""How a finished trial's state is decided: the one rule Optuna and MLflow both follow."""

from __future__ import annotations

import math

import pytest

from automl.optuna_bridge import trial_outcome
from workers.context import FINAL_KEY


@pytest.mark.parametrize(
    ("result", "error", "state", "value"),
    [
        ({"loss": 0.5, FINAL_KEY: True}, False, "COMPLETE", 0.5),
        ({"loss": 0.5, FINAL_KEY: False}, False, "PRUNED", 0.5),
        ({"loss": 0.5, FINAL_KEY: True}, True, "FAIL", None),
        ({"loss": math.nan, FINAL_KEY: True}, False, "FAIL", None),
        ({"loss": math.inf, FINAL_KEY: True}, False, "FAIL", None),
        ({"other": 1.0, FINAL_KEY: True}, False, "FAIL", None),
        (None, False, "FAIL", None),
        ({"loss": "high", FINAL_KEY: True}, False, "FAIL", None),
    ],
)
def test_trial_outcome(result: dict | None, error: bool, state: str, value: float | None) -> None:
    outcome = trial_outcome(result, "loss", error=error)
    assert outcome.state == state
    assert outcome.value == value
    assert (outcome.reason is None) == (state != "FAIL")


def test_missing_metric_reason_names_the_metric() -> None:
    assert "'loss'" in (trial_outcome({FINAL_KEY: True}, "loss", error=False).reason or "")
