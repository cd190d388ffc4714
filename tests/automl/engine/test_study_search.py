"""How a finished trial's state is decided: the one rule Optuna and MLflow both follow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from automl.engine.study_search import trial_outcome
from workers.context import FAIL_REASON_KEY, FINAL_KEY


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
        # float() takes these, but a string or a bool is not a metric (issue 14, item 14)
        ({"loss": "0.5", FINAL_KEY: True}, False, "FAIL", None),
        ({"loss": True, FINAL_KEY: True}, False, "FAIL", None),
        ({"loss": np.bool_(False), FINAL_KEY: True}, False, "FAIL", None),
        # NumPy and torch scalars are numbers
        ({"loss": np.float32(0.5), FINAL_KEY: True}, False, "COMPLETE", 0.5),
        ({"loss": np.int64(2), FINAL_KEY: True}, False, "COMPLETE", 2.0),
        ({"loss": torch.tensor(0.5), FINAL_KEY: True}, False, "COMPLETE", 0.5),
        # the trial ended itself as failed: its reason wins over a finite metric
        ({"loss": 0.5, FINAL_KEY: True, FAIL_REASON_KEY: "training loss became nan at epoch 2"}, False, "FAIL", None),
    ],
)
def test_trial_outcome(result: dict | None, error: bool, state: str, value: float | None) -> None:
    outcome = trial_outcome(result, "loss", error=error)
    assert outcome.state == state
    assert outcome.value == value
    assert (outcome.reason is None) == (state != "FAIL")


def test_missing_metric_reason_names_the_metric() -> None:
    assert "'loss'" in (trial_outcome({FINAL_KEY: True}, "loss", error=False).reason or "")


def test_resumed_trial_keeps_its_params_and_fills_missing_ones() -> None:
    import optuna

    from automl.engine.study_search import StudySearch

    storage = optuna.storages.InMemoryStorage()
    space = {"x": optuna.distributions.FloatDistribution(0, 1), "n": optuna.distributions.IntDistribution(1, 4)}
    study = optuna.create_study(storage=storage, study_name="s")
    half = study.ask()  # a runner died after choosing x but before n
    x = half.suggest_float("x", 0, 1)
    bare = study.ask()  # ... and one died before choosing anything
    stale = [t for t in study.get_trials() if t.state.name == "RUNNING"]
    searcher = StudySearch(space=space, metric="loss", mode="min", storage=storage, study_name="s", resume=stale)
    first, second, fresh = searcher.suggest("a"), searcher.suggest("b"), searcher.suggest("c")
    assert first["_trial_number"] == half.number and first["x"] == x and 1 <= first["n"] <= 4
    assert second["_trial_number"] == bare.number and set(second) == {"x", "n", "_trial_number"}
    assert fresh["_trial_number"] == 2
    assert len(study.get_trials()) == 3, "resumed trials are not asked for again"
