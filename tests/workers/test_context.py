"""The trial context's rules for what a metric is, and a trial that ends itself as failed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.context import FAIL_REASON_KEY, FINAL_KEY, STEP_KEY, ListReporter, TrialContext, as_number
from workers.trainable import TrialPlan, run_with_context


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (0.5, 0.5),
        (3, 3.0),
        (np.float32(0.25), 0.25),
        (np.int64(7), 7.0),
        (torch.tensor(0.5), 0.5),
        (torch.tensor([2.0]), 2.0),
        ("0.5", None),
        (b"0.5", None),
        (True, None),
        (np.bool_(True), None),
        (torch.tensor(True), None),
        (None, None),
        (torch.tensor([1.0, 2.0]), None),
        ([0.5], None),
    ],
)
def test_as_number_takes_real_numbers_and_scalars_only(value: object, number: float | None) -> None:
    result = as_number(value)
    assert result == number
    assert result is None or type(result) is float


def test_nan_is_a_number_whose_trial_the_driver_fails() -> None:
    assert np.isnan(as_number(np.float32("nan")))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0.5", True, None])
def test_report_and_finish_refuse_non_numbers(value: object) -> None:
    ctx = TrialContext({}, reporter=ListReporter(), max_epochs=3)
    with pytest.raises(ValueError, match="metric 'loss' must be a number"):
        ctx.report(loss=value)
    with pytest.raises(ValueError, match="metric 'loss' must be a number"):
        ctx.finish({"loss": value})


def test_fail_sends_one_final_report_with_the_reason_and_nothing_after() -> None:
    reporter = ListReporter()
    ctx = TrialContext({}, reporter=reporter, max_epochs=5)
    ctx.report(loss=1.0)
    ctx.save_model(torch.nn.Linear(1, 1))
    ctx.fail("diverged")
    ctx.report(loss=0.1)
    ctx.finish(0.1, metric="loss")

    assert reporter.reports[-1] == {STEP_KEY: 1, FINAL_KEY: True, FAIL_REASON_KEY: "diverged"}
    assert len(reporter.reports) == 2
    assert reporter.models == [], "a failed trial leaves no model to register"
    assert ctx.finished


@pytest.mark.parametrize(
    ("returned", "reason"),
    [
        ("0.5", "'loss' is not a number: '0.5'"),
        (True, "'loss' is not a number: True"),
        ({"loss": "x"}, "'loss' is not a number: 'x'"),
        ([0.5, "fast"], "'seconds' is not a number: 'fast'"),
    ],
)
def test_an_objective_returning_a_non_number_fails_its_trial(returned: object, reason: str) -> None:
    reporter = ListReporter()
    ctx = TrialContext({"x": 1.0}, reporter=reporter, max_epochs=2)
    plan = TrialPlan(
        max_epochs=2, seed=0, cpus=1, gpus=0, metric="loss", metrics=("loss", "seconds"), objective=lambda p: returned
    )

    run_with_context(ctx, plan)

    (final,) = reporter.reports
    assert final[FAIL_REASON_KEY] == reason and final[FINAL_KEY] is True


@pytest.mark.parametrize("returned", [np.float64(0.5), torch.tensor(0.5), 1])
def test_an_objective_returning_a_numpy_or_torch_scalar_counts(returned: object) -> None:
    reporter = ListReporter()
    ctx = TrialContext({}, reporter=reporter, max_epochs=2)
    run_with_context(ctx, TrialPlan(max_epochs=2, seed=0, cpus=1, gpus=0, metric="loss", objective=lambda p: returned))
    (final,) = reporter.reports
    assert final["loss"] == float(returned) and FAIL_REASON_KEY not in final


def test_an_objective_returning_none_keeps_its_last_report() -> None:
    def objective(params: dict, ctx: TrialContext) -> None:
        ctx.report(loss=0.3)

    reporter = ListReporter()
    ctx = TrialContext({}, reporter=reporter, max_epochs=2)
    run_with_context(ctx, TrialPlan(max_epochs=2, seed=0, cpus=1, gpus=0, metric="loss", objective=objective))
    assert reporter.reports[-1] == {"loss": 0.3, STEP_KEY: 1, FINAL_KEY: True}
