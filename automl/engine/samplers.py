"""The sampler registry: a name from the spec becomes a real Optuna sampler.

Each factory gets one :class:`SamplerRequest`: the job seed, the sampler options from the
spec, how many trials may run at once (TPE then lies about running trials so parallel trials
do not all sample the same point), the search space (the grid sampler enumerates it), the
number of objectives and the job's budget of trials (the start-up note compares the two).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from automl.spaces import SearchSpace


@dataclass(frozen=True)
class SamplerRequest:
    """What a sampler factory may use."""

    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)
    concurrency: int = 1
    space: SearchSpace | None = None
    n_objectives: int = 1
    budget: int | None = None  # the job's budget.trials (None: not known), for the start-up note


SamplerFactory = Callable[[SamplerRequest], "BaseSampler"]

# TPE and GP draw their first trials at random before their model proposes any: Optuna's
# n_startup_trials, 10 for both, which is all of an 8-trial job. Kept: a start-up sized by the
# budget (a quarter of it, 2 to 10) was measured against it and was not better (better for TPE on
# Branin at 8 trials, worse at 16 and on Rosenbrock, worse for GP; benchmarks/README.md, "Start-up
# trials"). What the job gets is said in its events instead, and the spec can set it.
OPTUNA_STARTUP_TRIALS = 10
# What each one counts towards its start-up: TPE every finished trial, GP completed ones only,
# so trials the scheduler stops early prolong a GP's start-up.
STARTUP_COUNTS = {"tpe": "finished", "gp": "completed"}


def startup_trials(name: str, request: SamplerRequest) -> int | None:
    """How many random start-up draws sampler ``name`` makes before its model proposes points:
    ``sampler.options.n_startup_trials`` when the spec gives it, else Optuna's 10. ``None`` for a
    sampler without such a start-up."""
    if name not in STARTUP_COUNTS:
        return None
    explicit = request.options.get("n_startup_trials")
    if explicit is None:
        return OPTUNA_STARTUP_TRIALS
    # A value Optuna cannot count with is refused when the spec is checked; nothing to say about it here.
    return explicit if isinstance(explicit, int) and not isinstance(explicit, bool) else None


def startup_note(name: str, request: SamplerRequest) -> str | None:
    """One line for the job's events: how many of its first trials sampler ``name`` draws at random, and why."""
    n = startup_trials(name, request)
    if n is None:
        return None
    if "n_startup_trials" in request.options:
        source = "sampler.options.n_startup_trials"
    else:
        source = "Optuna's default; sampler.options.n_startup_trials sets it"
    if request.budget is not None and n >= request.budget:
        return f"sampler {name}: all {request.budget} trials are random start-up draws (n_startup_trials {n}: {source})"
    counted = "have finished" if STARTUP_COUNTS[name] == "finished" else "have completed (trials stopped early do not count)"
    of = f" of {request.budget}" if request.budget is not None else ""
    return f"sampler {name}: the first {n}{of} trials are random start-up draws ({source}); its model proposes once {n} {counted}"


def _tpe(req: SamplerRequest) -> BaseSampler:
    from optuna.samplers import TPESampler

    defaults: dict[str, Any] = {"multivariate": True, "constant_liar": req.concurrency > 1}
    return TPESampler(seed=req.seed, **{**defaults, **req.options})


def _random(req: SamplerRequest) -> BaseSampler:
    from optuna.samplers import RandomSampler

    return RandomSampler(seed=req.seed, **req.options)


def _gp(req: SamplerRequest) -> BaseSampler:
    from optuna.samplers import GPSampler

    return GPSampler(seed=req.seed, **req.options)


def _cmaes(req: SamplerRequest) -> BaseSampler:
    from optuna.samplers import CmaEsSampler, RandomSampler

    # CMA-ES handles numbers only; categorical parameters are sampled at random beside it.
    return CmaEsSampler(
        seed=req.seed, **{"independent_sampler": RandomSampler(seed=req.seed), "warn_independent_sampling": False, **req.options}
    )


def _qmc(req: SamplerRequest) -> BaseSampler:
    from optuna.samplers import QMCSampler

    return QMCSampler(seed=req.seed, **{"scramble": True, **req.options})


def _grid(req: SamplerRequest) -> BaseSampler:
    from optuna.samplers import GridSampler

    class TuneGridSampler(GridSampler):
        """Optuna's grid sampler, minus its ``Study.stop`` once the grid is done: that only
        works inside ``Study.optimize``, and here Tune's trial budget ends the search."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    if req.space is None:
        raise ValueError("the grid sampler needs a space of parameters, not a define-by-run function")
    return TuneGridSampler(grid_points(req.space), seed=req.seed, **req.options)


def _nsga2(req: SamplerRequest) -> BaseSampler:
    from optuna.samplers import NSGAIISampler

    return NSGAIISampler(seed=req.seed, **req.options)


SAMPLERS: dict[str, SamplerFactory] = {
    "tpe": _tpe,
    "random": _random,
    "gp": _gp,
    "cmaes": _cmaes,
    "qmc": _qmc,
    "grid": _grid,
    "nsga2": _nsga2,
}
SINGLE_OBJECTIVE_ONLY = frozenset({"gp", "cmaes"})


def grid_points(space: SearchSpace) -> dict[str, list[Any]]:
    """Every value the grid sampler tries, per parameter.

    Raises:
        ValueError: naming a parameter the grid cannot enumerate (a float with no ``step``).
    """
    from automl.spaces import CategoricalParam, FloatParam

    points: dict[str, list[Any]] = {}
    for name, param in space.params.items():
        if isinstance(param, CategoricalParam):
            points[name] = list(param.choices)
        elif isinstance(param, FloatParam):
            if param.step is None:
                raise ValueError(f"the grid sampler cannot enumerate space.params.{name}: give it a step, or make it categorical")
            count = round((param.high - param.low) / param.step) + 1
            points[name] = [
                round(param.low + i * param.step, 12) for i in range(count) if param.low + i * param.step <= param.high + 1e-12
            ]
        else:
            points[name] = list(range(param.low, param.high + 1, param.step))
    return points


def grid_size(space: SearchSpace) -> int:
    """How many points the grid has."""
    size = 1
    for values in grid_points(space).values():
        size *= len(values)
    return size


def create_sampler(name: str, request: SamplerRequest) -> BaseSampler:
    """Build the sampler called ``name``.

    Raises:
        ValueError: for an unknown name (listing the known ones), a space or an objective count
            the sampler cannot handle, or options it refuses.
    """
    try:
        factory = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)})") from None
    if request.n_objectives > 1 and name in SINGLE_OBJECTIVE_ONLY:
        raise ValueError(f"sampler {name!r} optimises one objective; use nsga2, tpe or random for several")
    try:
        return factory(request)
    except TypeError as exc:
        raise ValueError(f"sampler {name!r} does not accept these options: {exc}") from None
