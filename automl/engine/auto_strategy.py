"""``sampler: auto`` and ``scheduler: auto``: the rule that picks a job's search strategy from a few facts.

:func:`choose_strategy` maps :class:`StrategyFacts` (the space's shape, the budget, the trials at
once, the objectives, the epochs per trial, and what the spec names itself) to a
:class:`StrategyChoice`: a sampler, a scheduler, and one line saying why. It also sizes ASHA's
``screen`` (:mod:`automl.engine.screening`) when the spec leaves it out, whether ``asha`` was named
or chosen: a few percent of the budget on an all-numeric space, none otherwise (issue 19's peer
benchmark: it helped on the continuous tuning tasks, not on the mixed or training ones). The
thresholds are the named constants below, so the rule table (docs/job-spec.md, "Choosing the
strategy: auto") can be retuned from the benchmarks' figures in one place.

What must stay true: :func:`choose_strategy` is a pure function (the same facts give the same
choice: no clock, no randomness, no I/O), so a plan resolves ``auto`` once and a resumed job runs
what was chosen; it names only entries of the sampler and scheduler registries, never ``pbt``;
this module is a leaf of the search package and imports nothing heavy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl.spaces import SearchSpace

AUTO = "auto"
# The strategy a spec gets when it names none: the spec model and automl.search read it here.
# Making auto the default is this one line, ``(AUTO, AUTO)``, once the peer benchmark says so.
DEFAULT_STRATEGY = ("tpe", "asha")
DEFAULT_SAMPLER, DEFAULT_SCHEDULER = DEFAULT_STRATEGY

# -- the rule table's thresholds ----------------------------------------------------------------
# GP (Optuna's GPSampler) for a small, all-numeric space and a small budget, few trials at once:
# where a Gaussian process is at its best and its cost per proposal (a fit per trial) stays small.
GP_MAX_PARAMS = 10
GP_MAX_TRIALS = 100
GP_MAX_CONCURRENT = 4
# CMA-ES for an all-numeric space of at least two parameters (in one there is no covariance to
# learn) and a budget of several hundred trials: enough generations for it to adapt.
CMAES_MIN_TRIALS = 300
CMAES_MIN_PARAMS = 2
# NSGA-II for several objectives once the budget holds several generations of its population (50).
NSGA2_MIN_TRIALS = 250
# ASHA when a trial has enough epochs to stop it early at a few rungs, and the budget enough trials
# to compare at each rung; FIFO (no early stopping) otherwise.
ASHA_MIN_EPOCHS = 4
ASHA_MIN_TRIALS = 10
# ASHA's screen on an all-numeric space with one objective: one trial in this many of the budget
# stops at the first rung, after the first trial, before ASHA promotes from it (8 at the peer
# benchmark's 272 trials, where 8 was chosen before any run; none under 32 trials).
SCREEN_ONE_IN = 32

# Samplers whose model learns from completed trials only (Optuna's GPSampler and CmaEsSampler
# read COMPLETE trials, NSGA-II builds its generations from them): under a scheduler that stops
# most trials early they stay random draws for most of the job. TPE also learns from stopped ones.
LEARNS_FROM_COMPLETED_ONLY = frozenset({"gp", "cmaes", "nsga2"})
# Schedulers that let every trial run to its last epoch.
RUNS_TO_THE_END = frozenset({"fifo"})


@dataclass(frozen=True)
class StrategyFacts:
    """What the rule looks at.

    Attributes:
        n_numeric: float and int parameters (``0`` for a define-by-run space: not known).
        n_categorical: categorical parameters.
        conditional: the space is an Optuna define-by-run function: parameters may depend on
            others, and which ones exist is known only as trials run.
        trials: the budget (``budget.trials``).
        concurrency: trials at once (``resources.max_concurrent``, else what the CPUs allow; at most ``trials``).
        n_objectives: metrics optimised together.
        max_epochs: the most epochs (steps) one trial runs.
        sampler, scheduler: what the spec names: a registry name, or ``auto``.
        screen: the ``screen`` option the spec gives the scheduler (``None``: not given, so the
            rule sizes it when the scheduler is ``asha``).
    """

    n_numeric: int
    n_categorical: int
    conditional: bool
    trials: int
    concurrency: int
    n_objectives: int
    max_epochs: int
    sampler: str = AUTO
    scheduler: str = AUTO
    screen: int | None = None


@dataclass(frozen=True)
class StrategyChoice:
    """What a job runs, and why, for its events, its MLflow run and ``automl status``.

    Attributes:
        sampler, scheduler: registry names the job runs.
        sampler_reason, scheduler_reason: why ``auto`` picked each; ``None`` for one the spec named.
        screen, screen_reason: the trials ASHA screens at its first rung when the rule sized it
            (``0`` and ``None`` when the rule left it alone: not ``asha``, or the spec gives ``screen``).
    """

    sampler: str
    scheduler: str
    sampler_reason: str | None = None
    scheduler_reason: str | None = None
    screen: int = 0
    screen_reason: str | None = None

    @property
    def chose_anything(self) -> bool:
        """Whether the rule decided any part (else the spec named everything the job runs)."""
        return any(why is not None for why in (self.sampler_reason, self.scheduler_reason, self.screen_reason))

    def _parts(self) -> list[tuple[str, str | None]]:
        parts = [(f"sampler {self.sampler}", self.sampler_reason), (f"scheduler {self.scheduler}", self.scheduler_reason)]
        if self.screen_reason is not None:
            parts.append((f"screen {self.screen}", self.screen_reason))
        return parts

    @property
    def reason(self) -> str:
        """``sampler gp: 5 numeric parameters, 40 trials, 2 at once; scheduler fifo: ...``: the parts the rule decided."""
        return "; ".join(f"{what}: {why}" for what, why in self._parts() if why is not None)

    @property
    def asked(self) -> str:
        """What the spec named: ``sampler auto, scheduler asha``."""
        sampler = AUTO if self.sampler_reason is not None else self.sampler
        scheduler = AUTO if self.scheduler_reason is not None else self.scheduler
        return f"sampler {sampler}, scheduler {scheduler}"

    def summary(self) -> str:
        """``sampler gp (auto): 5 numeric parameters, ...; scheduler asha``: the line events and ``status`` show."""
        return "; ".join(what if why is None else f"{what} (auto): {why}" for what, why in self._parts())

    def to_record(self) -> dict[str, Any]:
        """The choice as a stored plan keeps it (JSON)."""
        return {
            "sampler": self.sampler,
            "scheduler": self.scheduler,
            "sampler_reason": self.sampler_reason,
            "scheduler_reason": self.scheduler_reason,
            "screen": self.screen,
            "screen_reason": self.screen_reason,
        }

    @classmethod
    def from_record(cls, record: Any) -> StrategyChoice | None:
        """The choice :meth:`to_record` wrote (``None`` for anything else: a plan without one; a plan
        stored before the screen was sized reads as screening none)."""
        if not isinstance(record, Mapping):
            return None
        sampler, scheduler = record.get("sampler"), record.get("scheduler")
        reasons = record.get("sampler_reason"), record.get("scheduler_reason"), record.get("screen_reason")
        screen = record.get("screen", 0)
        if not (isinstance(sampler, str) and isinstance(scheduler, str)):
            return None
        if not all(why is None or isinstance(why, str) for why in reasons):
            return None
        if isinstance(screen, bool) or not isinstance(screen, int):
            return None
        return cls(sampler, scheduler, reasons[0], reasons[1], screen, reasons[2])


def facts_for(
    space: SearchSpace | None,
    *,
    trials: int,
    concurrency: int,
    n_objectives: int,
    max_epochs: int,
    sampler: str = AUTO,
    scheduler: str = AUTO,
    screen: int | None = None,
) -> StrategyFacts:
    """The facts of a job over ``space`` (``None``: a define-by-run space)."""
    categorical = sum(1 for p in space.params.values() if p.type == "categorical") if space is not None else 0
    numeric = len(space.params) - categorical if space is not None else 0
    return StrategyFacts(
        n_numeric=numeric,
        n_categorical=categorical,
        conditional=space is None,
        trials=trials,
        concurrency=max(1, min(concurrency, trials)),
        n_objectives=n_objectives,
        max_epochs=max_epochs,
        sampler=sampler,
        scheduler=scheduler,
        screen=screen,
    )


def choose_strategy(facts: StrategyFacts) -> StrategyChoice:
    """The sampler and scheduler for ``facts``, and ASHA's screen, and why (a part the spec names is kept as it is).

    The scheduler is chosen first, from the epochs per trial and the budget (and a named sampler
    that learns from completed trials only); the sampler then knows whether trials run to the end.
    """
    scheduler, scheduler_reason = facts.scheduler, None
    if scheduler == AUTO:
        scheduler, scheduler_reason = _scheduler(facts)
    sampler, sampler_reason = facts.sampler, None
    if sampler == AUTO:
        sampler, sampler_reason = _sampler(facts, scheduler)
    screen, screen_reason = 0, None
    if scheduler == "asha" and facts.screen is None:
        screen, screen_reason = _screen(facts)
    return StrategyChoice(sampler, scheduler, sampler_reason, scheduler_reason, screen, screen_reason)


def _scheduler(facts: StrategyFacts) -> tuple[str, str]:
    if facts.max_epochs < ASHA_MIN_EPOCHS:
        return "fifo", f"{_n(facts.max_epochs, 'epoch')} per trial, too few to stop trials early (asha needs {ASHA_MIN_EPOCHS})"
    if facts.trials < ASHA_MIN_TRIALS:
        return "fifo", f"{_n(facts.trials, 'trial')}, too few to compare at asha's rungs (asha needs {ASHA_MIN_TRIALS})"
    if facts.sampler in LEARNS_FROM_COMPLETED_ONLY:
        return "fifo", f"sampler {facts.sampler} learns from completed trials only, so every trial runs to the end"
    return "asha", f"up to {_n(facts.max_epochs, 'epoch')} per trial, {_n(facts.trials, 'trial')}: poor trials stop early"


def _sampler(facts: StrategyFacts, scheduler: str) -> tuple[str, str]:
    if scheduler == "pbt":
        cut_short = "pbt evolves the population as it trains and tpe proposes its start"
    else:
        cut_short = f"{scheduler} stops trials early and only tpe learns from stopped trials"
    to_the_end = scheduler in RUNS_TO_THE_END
    if facts.n_objectives > 1:
        budget = f"{facts.n_objectives} objectives, {_n(facts.trials, 'trial')}"
        if not to_the_end:
            return "tpe", f"{budget}, but {cut_short}"
        if facts.trials < NSGA2_MIN_TRIALS:
            return "tpe", f"{budget}, under the {NSGA2_MIN_TRIALS} nsga2 needs"
        return "nsga2", f"{budget}, at least the {NSGA2_MIN_TRIALS} nsga2 needs"
    if facts.conditional:
        return "tpe", "a define-by-run space, whose parameters may be conditional"
    if facts.n_categorical:
        return "tpe", f"{facts.n_categorical} of {_n(facts.n_categorical + facts.n_numeric, 'parameter')} categorical"
    shape = f"{_n(facts.n_numeric, 'numeric parameter')}, {_n(facts.trials, 'trial')}, {facts.concurrency} at once"
    if not to_the_end:
        return "tpe", f"{shape}, but {cut_short}"
    over_gp = [
        f"over gp's {limit} {what}"
        for value, limit, what in (
            (facts.n_numeric, GP_MAX_PARAMS, "parameters"),
            (facts.trials, GP_MAX_TRIALS, "trials"),
            (facts.concurrency, GP_MAX_CONCURRENT, "at once"),
        )
        if value > limit
    ]
    if not over_gp:
        return "gp", shape
    if facts.trials >= CMAES_MIN_TRIALS and facts.n_numeric >= CMAES_MIN_PARAMS:
        return "cmaes", shape
    under_cmaes = (
        f"under cmaes's {CMAES_MIN_TRIALS} trials"
        if facts.trials < CMAES_MIN_TRIALS
        else f"cmaes needs {CMAES_MIN_PARAMS} parameters"
    )
    return "tpe", f"{shape}: {', '.join(over_gp)}, {under_cmaes}"


def _screen(facts: StrategyFacts) -> tuple[int, str | None]:
    """ASHA's screen: one trial in :data:`SCREEN_ONE_IN` of the budget, on an all-numeric space with one objective.

    ``(0, None)`` where it does not apply: the choice then says nothing of it, as for a job that
    names its own ``screen``.
    """
    if facts.conditional or facts.n_categorical or facts.n_objectives > 1:
        return 0, None
    screen = facts.trials // SCREEN_ONE_IN
    if not screen:
        return 0, None
    shape = f"{_n(facts.n_numeric, 'numeric parameter')}, {_n(facts.trials, 'trial')}"
    return screen, f"{shape}: one trial in {SCREEN_ONE_IN} stops at asha's first rung, after the first, before it promotes"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def strategy_line(plan_json: str | None) -> str | None:
    """What a stored plan runs, as ``automl status`` shows it: ``sampler tpe; scheduler asha``, with
    the reason of each part ``auto`` chose (:meth:`StrategyChoice.summary`). ``None`` when there is no
    plan to read (a job queued before plans were stored)."""
    if not plan_json:
        return None
    try:
        record = json.loads(plan_json)
        spec = record["spec"]
        sampler, scheduler = spec["sampler"]["name"], spec["scheduler"]["name"]
    except (ValueError, TypeError, KeyError):
        return None
    choice = StrategyChoice.from_record(record.get("strategy"))
    if choice is not None:
        return choice.summary()
    return f"sampler {sampler}; scheduler {scheduler}"
