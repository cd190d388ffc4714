"""A PBT job's options, checked: the settings of Tune's PBT and the mutations drawn from the space.

The mutations come from the space: a float or int parameter is scaled by the perturbation
factors (and clipped back into its range), a categorical one moves to a neighbouring choice;
either is resampled from its distribution with ``resample_probability``.

What must stay true: checking a spec's PBT options imports no Ray (the CLI's ``validate`` and
the submit path use :func:`check_pbt`); each wrong option is a ``SpecError`` naming its field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automl.errors import SpecError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution


@dataclass(frozen=True)
class PBTSettings:
    """A PBT job's options, validated (see :func:`pbt_settings` for their meaning and defaults)."""

    perturbation_interval: int
    burn_in_period: int
    checkpoint_interval: int
    quantile_fraction: float
    resample_probability: float
    perturbation_factors: tuple[float, float]
    synch: bool
    mutate: tuple[str, ...]


OPTIONS = (
    "perturbation_interval",
    "burn_in_period",
    "checkpoint_interval",
    "quantile_fraction",
    "resample_probability",
    "perturbation_factors",
    "synch",
    "mutate",
)


def pbt_settings(
    options: Mapping[str, Any],
    *,
    max_epochs: int,
    grace_period: int,
    space: Mapping[str, BaseDistribution] | None,
    mutable: frozenset[str] | None,
    space_known: bool = True,
) -> PBTSettings:
    """Validate a PBT job's ``scheduler.options``.

    Args:
        options: ``perturbation_interval`` (epochs between exploit/explore steps; default a
            quarter of ``max_epochs``), ``burn_in_period`` (no perturbation before; default the
            spec's ``grace_period``), ``checkpoint_interval`` (default: the largest that lands on
            every perturbation step), ``quantile_fraction`` (0.25), ``resample_probability``
            (0.25), ``perturbation_factors`` ([1.2, 0.8]), ``synch`` (false), ``mutate`` (the
            parameters PBT changes; default every parameter of the space that ``mutable`` allows).
        max_epochs: the spec's ``budget.max_epochs``.
        grace_period: the spec's ``scheduler.grace_period``.
        space: the space's Optuna distributions; ``None`` for a define-by-run space.
        mutable: the parameters the trainer can change mid-training; ``None``: any (a custom objective).
        space_known: ``False`` where the caller has not resolved the space (the spec's
            structural check): ``space`` and ``mutate`` are then checked later, by
            :func:`check_pbt`.

    Raises:
        SpecError: naming the option (or the space) that is wrong and what to do.
    """
    field = "scheduler.options"
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise SpecError(f"{field}: unknown option(s) {', '.join(map(repr, unknown))} for pbt (known: {', '.join(OPTIONS)})")
    if space is None and space_known:
        raise SpecError(
            "space: the pbt scheduler perturbs hyperparameters within their ranges, so it needs a space of "
            "parameters (a preset, a file or a mapping), not a define-by-run function"
        )
    if max_epochs < 2:
        raise SpecError("budget.max_epochs: pbt perturbs trials between epochs; give it at least 2 epochs")
    interval = _integer(options, "perturbation_interval", max(1, max_epochs // 4), low=1)
    if interval >= max_epochs:
        raise SpecError(
            f"{field}.perturbation_interval: {interval} is not below budget.max_epochs ({max_epochs}), "
            "so no trial would ever be perturbed; lower it"
        )
    burn_in = _integer(options, "burn_in_period", grace_period, low=0)
    # Tune perturbs a trial at the first step >= max(interval, burn-in), then every interval:
    # a checkpoint must exist at each such step, or the trial cannot be cloned.
    first = max(interval, burn_in)
    lattice = math.gcd(interval, first)
    every = _integer(options, "checkpoint_interval", lattice, low=1)
    if lattice % every:
        raise SpecError(
            f"{field}.checkpoint_interval: {every} epochs misses the perturbation steps (epoch {first}, then every "
            f"{interval}); use a divisor of {lattice}"
        )
    quantile = _number(options, "quantile_fraction", 0.25)
    if not 0 < quantile <= 0.5:
        raise SpecError(f"{field}.quantile_fraction: {quantile} must be in (0, 0.5]: the share of trials cloned and cloned from")
    resample = _number(options, "resample_probability", 0.25)
    if not 0 <= resample <= 1:
        raise SpecError(f"{field}.resample_probability: {resample} must be a probability in [0, 1]")
    factors = options.get("perturbation_factors", (1.2, 0.8))
    if (
        not isinstance(factors, (list, tuple))
        or len(factors) != 2
        or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in factors)
    ):
        raise SpecError(f"{field}.perturbation_factors: {factors!r} must be two positive numbers, e.g. [1.2, 0.8]")
    synch = options.get("synch", False)
    if not isinstance(synch, bool):
        raise SpecError(f"{field}.synch: {synch!r} must be true or false")
    return PBTSettings(
        perturbation_interval=interval,
        burn_in_period=burn_in,
        checkpoint_interval=every,
        quantile_fraction=quantile,
        resample_probability=resample,
        perturbation_factors=(float(factors[0]), float(factors[1])),
        synch=synch,
        mutate=_mutated(options.get("mutate"), space, mutable) if space is not None else tuple(options.get("mutate") or ()),
    )


def _integer(options: Mapping[str, Any], name: str, default: int, *, low: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"scheduler.options.{name}: {value!r} must be a whole number of epochs >= {low}")
    return value


def _number(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"scheduler.options.{name}: {value!r} must be a number")
    return float(value)


def _mutated(given: Any, space: Mapping[str, Any], mutable: frozenset[str] | None) -> tuple[str, ...]:
    field = "scheduler.options.mutate"
    allowed = [name for name in space if mutable is None or name in mutable]
    if given is None:
        if not allowed:
            raise SpecError(
                f"space: none of its parameters ({', '.join(space)}) can change while a model trains, so pbt has "
                f"nothing to perturb; add one of {', '.join(sorted(mutable or ()))}"
            )
        return tuple(allowed)
    if not isinstance(given, (list, tuple)) or not given or not all(isinstance(n, str) for n in given):
        raise SpecError(f"{field}: {given!r} must be a list of the space's parameter names")
    for name in given:
        if name not in space:
            raise SpecError(f"{field}: {name!r} is not a parameter of the space ({', '.join(space)})")
        if name not in allowed:
            raise SpecError(
                f"{field}: {name!r} changes the model itself, so a trial cannot take another trial's weights with a new "
                f"value of it; mutate some of {', '.join(allowed) or 'nothing'} and keep {name!r} fixed per trial"
            )
    return tuple(dict.fromkeys(given))


def mutations(space: Mapping[str, BaseDistribution], names: tuple[str, ...]) -> dict[str, Any]:
    """Tune's ``hyperparam_mutations`` for ``names``: each Optuna distribution as a Tune domain or list."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from ray import tune

    result: dict[str, Any] = {}
    for name in names:
        dist = space[name]
        if isinstance(dist, CategoricalDistribution):
            result[name] = list(dist.choices)  # PBT moves to a neighbouring choice
        elif isinstance(dist, FloatDistribution):
            if dist.log:
                result[name] = tune.loguniform(dist.low, dist.high)
            elif dist.step is not None:
                result[name] = tune.quniform(dist.low, dist.high, dist.step)
            else:
                result[name] = tune.uniform(dist.low, dist.high)
        elif isinstance(dist, IntDistribution):
            if dist.log:
                result[name] = tune.lograndint(dist.low, dist.high + 1)
            elif dist.step != 1:
                result[name] = tune.qrandint(dist.low, dist.high, dist.step)
            else:
                result[name] = tune.randint(dist.low, dist.high + 1)
        else:
            raise ValueError(f"space.params.{name}: pbt cannot perturb a {type(dist).__name__}")
    return result


def clip(value: Any, dist: BaseDistribution) -> Any:
    """``value`` brought back into ``dist`` (PBT's scaling may push a number past its range or off its step)."""
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(dist, FloatDistribution):
        number = min(max(float(value), dist.low), dist.high)
        if dist.step is not None:
            number = min(dist.low + round((number - dist.low) / dist.step) * dist.step, dist.high)
        return number
    if isinstance(dist, IntDistribution):
        number = min(max(round(float(value)), dist.low), dist.high)
        if dist.step != 1:
            number = min(dist.low + round((number - dist.low) / dist.step) * dist.step, dist.high)
        return int(number)
    return value


def checkpoints_to_keep(settings: PBTSettings) -> int:
    """How many checkpoints each trial keeps: a donor's checkpoint must outlive the wait of the
    trial cloning it, across at least two perturbation intervals of the donor's own training."""
    return 2 * (settings.perturbation_interval // settings.checkpoint_interval) + 2


def check_pbt(
    options: Mapping[str, Any],
    *,
    max_epochs: int,
    grace_period: int,
    space: Mapping[str, BaseDistribution] | None,
    mutable: frozenset[str] | None,
    trials: int,
    max_concurrent: int | None,
) -> int:
    """The registry's check of a PBT job: the checkpoint interval its trials must keep.

    Raises:
        SpecError: naming the field that is wrong and what to do.
    """
    if max_concurrent is not None and max_concurrent < trials:
        raise SpecError(
            f"resources.max_concurrent: pbt trains its whole population (budget.trials = {trials}) side by "
            "side as resources allow, pausing and resuming members from checkpoints; leave max_concurrent unset"
        )
    settings = pbt_settings(options, max_epochs=max_epochs, grace_period=grace_period, space=space, mutable=mutable)
    return settings.checkpoint_interval
