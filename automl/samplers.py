"""The sampler registry: a name from the spec becomes a real Optuna sampler.

Each entry takes the job seed, the sampler options from the spec, and how many trials may
run at once (TPE then lies about running trials so parallel trials do not all sample the
same point).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

SamplerFactory = Callable[[int, Mapping[str, Any], int], "BaseSampler"]


def _tpe(seed: int, options: Mapping[str, Any], concurrency: int) -> BaseSampler:
    from optuna.samplers import TPESampler

    defaults: dict[str, Any] = {"multivariate": True, "constant_liar": concurrency > 1, "group": False}
    return TPESampler(seed=seed, **{**defaults, **options})


def _random(seed: int, options: Mapping[str, Any], concurrency: int) -> BaseSampler:
    from optuna.samplers import RandomSampler

    return RandomSampler(seed=seed, **options)


def _gp(seed: int, options: Mapping[str, Any], concurrency: int) -> BaseSampler:
    from optuna.samplers import GPSampler

    return GPSampler(seed=seed, **options)


def _qmc(seed: int, options: Mapping[str, Any], concurrency: int) -> BaseSampler:
    from optuna.samplers import QMCSampler

    return QMCSampler(seed=seed, **{"scramble": True, **options})


def _nsga2(seed: int, options: Mapping[str, Any], concurrency: int) -> BaseSampler:
    from optuna.samplers import NSGAIISampler

    return NSGAIISampler(seed=seed, **options)


SAMPLERS: dict[str, SamplerFactory] = {
    "tpe": _tpe,
    "random": _random,
    "gp": _gp,
    "qmc": _qmc,
    "nsga2": _nsga2,
}


def create_sampler(name: str, *, seed: int, options: Mapping[str, Any] | None = None, concurrency: int = 1) -> BaseSampler:
    """Build the sampler called ``name``.

    Raises:
        ValueError: for an unknown name (listing the known ones) or options the sampler refuses.
    """
    try:
        factory = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)})") from None
    try:
        return factory(seed, dict(options or {}), concurrency)
    except TypeError as exc:
        raise ValueError(f"sampler {name!r} does not accept these options: {exc}") from None
