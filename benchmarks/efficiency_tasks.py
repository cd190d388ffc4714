"""The sample-efficiency benchmark's tasks: the synthetic functions, the MLP job, their spaces.

Holds what a search is run *on*, not how it is run or scored:

- two synthetic functions with known optima (Branin; a 4-D Rosenbrock moved so its minimum is
  not at a corner or the centre), each reported as a learning curve ``f(x) + CURVE_C / step``:
  the ranking of trials at every step is their final ranking (early stopping's ideal case);
- the MLP task: the built-in ``mlp`` trainer on scikit-learn's ``digits`` with 25 % of the rows
  to train and 75 % to validate, as the job spec a user would submit (``mlp_spec``);
- ``tune_space``: our space format as the equivalent Ray Tune sampling domains, for bare Tune.

What must stay true: the objectives here run inside Ray's workers, which cannot import this
folder by name, so they are pickled by value (``automl.search`` does so for an objective's
module; ``efficiency_runs.ship_by_value`` for the bare-Tune trainables); they must not use
``_common`` or anything else only the driver can import. ``MLP_*`` and ``CURVE_C`` are
written into every JSON's settings: changing them changes what the results mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

CURVE_C = 1.0  # the learning-curve term c / step

# The MLP task: a bundled dataset and a split where the hyperparameters matter.
MLP_TASK = "mlp_digits"
MLP_DATASET = "digits"
MLP_SPACE = "mlp"
MLP_VAL_FRACTION = 0.75

# What each kind of task optimises and reports as its score.
KINDS: dict[str, dict[str, str]] = {
    "synthetic": {"mode": "min", "metric": "loss", "score": "regret"},
    "mlp": {"mode": "max", "metric": "val_accuracy", "score": "best val_accuracy"},
}


def branin(p: dict[str, Any]) -> float:
    x1, x2 = float(p["x1"]), float(p["x2"])
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


ROSEN_SHIFT = (0.6, -0.4, 0.9, -0.2)


def rosen4(p: dict[str, Any]) -> float:
    """4-D Rosenbrock moved so its minimum (0) is at x = ROSEN_SHIFT, not at a corner or the centre."""
    z = [float(p[f"x{i}"]) - ROSEN_SHIFT[i] + 1.0 for i in range(4)]
    return sum(100.0 * (z[i + 1] - z[i] ** 2) ** 2 + (1.0 - z[i]) ** 2 for i in range(3))


SYNTHETIC: dict[str, dict[str, Any]] = {
    "branin": {
        "fn": branin,
        "optimum": 0.397887357729738,
        "space": {"x1": {"type": "float", "low": -5.0, "high": 10.0}, "x2": {"type": "float", "low": 0.0, "high": 15.0}},
    },
    "rosenbrock4": {
        "fn": rosen4,
        "optimum": 0.0,
        "space": {f"x{i}": {"type": "float", "low": -2.0, "high": 2.0} for i in range(4)},
    },
}
TASKS = (*SYNTHETIC, MLP_TASK)


def kind(task: str) -> str:
    return "mlp" if task == MLP_TASK else "synthetic"


def learning_curve(value: float, steps: int) -> list[float]:
    """What a synthetic trial reports at steps 1..steps: ``value + CURVE_C / step``."""
    return [value + CURVE_C / step for step in range(1, steps + 1)]


def final_optimum(task: str, max_steps: int) -> float:
    """The best final value a synthetic task can report; regret = best final value - this = best f(x) - f*."""
    return SYNTHETIC[task]["optimum"] + CURVE_C / max_steps


def curve_objective(fn: Callable[[dict[str, Any]], float]) -> Callable[[dict[str, Any], Any], None]:
    """``fn`` as a service objective: its learning curve, one report a step."""

    def objective(params: dict[str, Any], ctx: Any) -> None:
        for step, loss in enumerate(learning_curve(fn(params), ctx.max_epochs), start=1):
            ctx.report(loss=loss, step=step)

    return objective


OBJECTIVES = {name: curve_objective(task["fn"]) for name, task in SYNTHETIC.items()}


def mlp_space() -> dict[str, Any]:
    """The ``mlp`` preset's parameters, in our space format."""
    import yaml

    from automl.spaces import presets_dir

    return yaml.safe_load((presets_dir() / f"{MLP_SPACE}.yaml").read_text())["params"]


def mlp_spec(
    sampler: str,
    scheduler: str,
    n_trials: int,
    max_steps: int,
    seed: int,
    sampler_options: dict[str, Any] | None = None,
    scheduler_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The MLP task as a job spec: what a user would submit (the sampler's and scheduler's defaults
    untouched unless a variant gives options)."""
    return {
        "name": f"sample-efficiency-{MLP_DATASET}",
        "trainer": {"name": "mlp", "dataset": MLP_DATASET, "val_fraction": MLP_VAL_FRACTION},
        "space": MLP_SPACE,
        "metric": "val_accuracy",
        "mode": "max",
        "sampler": {"name": sampler, "options": dict(sampler_options or {})},
        "scheduler": scheduler_section(scheduler, scheduler_options),
        "budget": {"trials": n_trials, "max_epochs": max_steps},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "seed": seed,
        "tracking": {"register_model": False},
    }


def scheduler_section(scheduler: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The spec's scheduler section; a ``grace_period`` among a variant's options goes to its own field."""
    options = dict(options or {})
    grace = options.pop("grace_period", None)
    return {"name": scheduler, "options": options, **({"grace_period": grace} if grace is not None else {})}


def tune_space(space: dict[str, Any]) -> dict[str, Any]:
    """Our space format as the equivalent Tune sampling domains."""
    from ray import tune

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p["type"] == "categorical":
            out[name] = tune.choice(list(p["choices"]))
        elif p["type"] == "float":
            out[name] = (tune.loguniform if p.get("log") else tune.uniform)(p["low"], p["high"])
        else:  # int
            out[name] = (tune.lograndint if p.get("log") else tune.randint)(p["low"], p["high"] + 1)
    return out
