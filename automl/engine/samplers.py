"""The sampler registry: a name from the spec becomes a real Optuna sampler.

Each factory gets one :class:`SamplerRequest`: the job seed, the sampler options from the
spec, how many trials may run at once (TPE then lies about running trials so parallel trials
do not all sample the same point), the search space (the grid sampler enumerates it) and the
number of objectives.
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


SamplerFactory = Callable[[SamplerRequest], "BaseSampler"]


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
    return CmaEsSampler(seed=req.seed, **{"independent_sampler": RandomSampler(seed=req.seed), "warn_independent_sampling": False, **req.options})


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
                raise ValueError(
                    f"the grid sampler cannot enumerate space.params.{name}: give it a step, or make it categorical"
                )
            count = round((param.high - param.low) / param.step) + 1
            points[name] = [round(param.low + i * param.step, 12) for i in range(count) if param.low + i * param.step <= param.high + 1e-12]
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
