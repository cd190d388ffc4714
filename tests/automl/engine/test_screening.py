"""ASHA with ``screen``: after the first trial, the next trials at the first rung stop there; after them, Tune's ASHA decides."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from automl.engine.schedulers import SchedulerRequest, build_scheduler, create_scheduler
from automl.engine.screening import ScreeningASHA

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


@dataclass
class FakeTrial:  # what Tune's ASHA reads of a trial
    trial_id: str


def scheduler(screen: int, max_epochs: int = 8) -> ScreeningASHA:
    built = build_scheduler(
        "asha", SchedulerRequest("loss", "min", max_epochs, grace_period=1, options={"screen": screen, "reduction_factor": 2})
    )
    assert isinstance(built, ScreeningASHA)
    return built


def report(asha: ASHAScheduler, trial: FakeTrial, step: int, loss: float) -> str:
    return asha.on_trial_result(None, trial, {"training_iteration": step, "loss": loss})


def test_after_the_first_trial_the_next_at_the_first_rung_stop_and_then_asha_decides() -> None:
    asha = scheduler(screen=3)
    trials = [FakeTrial(f"t{i}") for i in range(6)]
    for t in trials:
        asha.on_trial_add(None, t)
    # the first trial goes on as ASHA decides: alone at each rung, it trains to the end (an early answer)
    assert [report(asha, trials[0], step, 0.6) for step in (1, 2, 4)] == [CONTINUE] * 3
    # the next three stop at the first rung, the best of them too: they only set the bar
    assert [report(asha, t, 1, loss) for t, loss in zip(trials[1:4], (0.5, 0.2, 0.9), strict=True)] == [STOP] * 3
    # after them ASHA's own rule: in the top half of what the rung holds goes on, else stops
    assert report(asha, trials[4], 1, 0.1) == CONTINUE
    assert report(asha, trials[5], 1, 0.95) == STOP
    # a trial goes through the screen once: its later rungs are ASHA's alone (better than the first trial's goes on)
    assert report(asha, trials[4], 2, 0.05) == CONTINUE


def test_screen_zero_is_tunes_asha_and_a_one_rung_job_is_never_screened() -> None:
    plain = create_scheduler("asha", metric="loss", mode="min", max_epochs=8, options={"screen": 0})
    assert type(plain) is ASHAScheduler
    one_rung = scheduler(screen=5, max_epochs=1)
    trial = FakeTrial("only")
    one_rung.on_trial_add(None, trial)
    report(one_rung, trial, 1, 0.3)  # its first rung is its last epoch: Tune's ASHA ends it, the screen skips it
    assert not one_rung.screened


@pytest.mark.parametrize("bad", [-1, 2.5, "three", True])
def test_a_screen_that_is_not_a_count_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="screen must be a whole number"):
        build_scheduler("asha", SchedulerRequest("loss", "min", 8, options={"screen": bad}))
