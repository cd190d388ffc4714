"""ASHA that screens before it promotes: after the first trial, the next trials to reach the first rung stop there.

Ray Tune's asynchronous successive halving promotes a trial from a rung when it is in the top
``1 / reduction_factor`` of the results recorded there *so far*, so the first trial to reach a rung
always goes on, and a job's first full trainings are of its first (random) configurations, chosen
against nothing. With ``screen: n`` the ``n`` trials to reach the first rung (``grace_period``)
after the first one stop there, so promotion from it starts only once ``n + 1`` results are there
to compare against, as a synchronous Hyperband bracket screens its first rung before it trains
anything further. The first trial still goes on as ASHA decides (it is alone at every rung, so it
trains to the end): a job has a fully trained answer early, while the others are screened. The
cost is ``n x grace_period`` epochs; their results still teach the sampler (they end PRUNED).

What must stay true: with ``screen`` 0 this is Tune's ``ASHAScheduler`` exactly; the first trial at
the first rung is never stopped here; a trial whose first-rung result is also its last epoch
(``max_t`` at the first rung) is never stopped here.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


class ScreeningASHA(ASHAScheduler):
    """Tune's ASHA whose ``screen`` trials at the first rung after the first one stop there (see the module's docstring)."""

    def __init__(self, *, screen: int, time_attr: str, grace_period: int, max_t: int, **options: Any) -> None:
        super().__init__(time_attr=time_attr, grace_period=grace_period, max_t=max_t, **options)
        if isinstance(screen, bool) or not isinstance(screen, int) or screen < 0:
            raise ValueError(f"screen must be a whole number >= 0, not {screen!r}")
        self.screen = screen
        self.first_rung = grace_period
        self.last_step = max_t
        self.step_attr = time_attr
        self.screened: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        step = result.get(self.step_attr)
        if step is None or step < self.first_rung or step >= self.last_step or trial.trial_id in self.screened:
            return action
        self.screened.add(trial.trial_id)  # the trials seen at the first rung, the first one included
        return TrialScheduler.STOP if 1 < len(self.screened) <= self.screen + 1 else action
